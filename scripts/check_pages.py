"""Opens pages of the built documentation in headless Chromium, reports their console errors, failed loads and
uncaught exceptions, and saves screenshots.

  python -m sphinx -b html docs docs/_build/html
  python scripts/check_pages.py docs/_build/html --pages index,families/gans,api/_autosummary/jaxae.models.vae \
      --out shots/

The site is served on 127.0.0.1 only; Chromium (Debian's `chromium`) is driven through its DevTools protocol
(`pip install websocket-client`). Exit 0 when no page has an error, 1 otherwise, 2 on bad input.
"""

import argparse
import base64
import contextlib
import functools
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from jaxae.errors import ArgumentParser, UserError, report, require

FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync']


@contextlib.contextmanager
def served(folder: Path):
  """An HTTP server of `folder` on 127.0.0.1 (a free port); yields its base URL."""
  class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_):
      pass

  handler = functools.partial(Quiet, directory=str(folder))
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    yield f'http://127.0.0.1:{server.server_port}'
  finally:
    server.shutdown()


@contextlib.contextmanager
def chromium(binary: str, port: int = 9333):
  """A headless Chromium listening for DevTools on 127.0.0.1:`port`."""
  with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:  # Chromium may write as it exits
    proc = subprocess.Popen([binary, *FLAGS, f'--remote-debugging-port={port}', f'--user-data-dir={profile}',
                             '--window-size=1280,1600', 'about:blank'], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
      for _ in range(100):
        with contextlib.suppress(OSError):
          urllib.request.urlopen(f'http://127.0.0.1:{port}/json/version', timeout=1)
          break
        time.sleep(0.1)
      yield port
    finally:
      proc.terminate()
      proc.wait(timeout=10)


def visit(port: int, url: str, screenshot: Path | None, settle: float = 2.0) -> list[str]:
  """Loads `url` in a new tab; returns its errors (console errors and warnings, exceptions, failed requests)."""
  import websocket

  request = urllib.request.Request(f'http://127.0.0.1:{port}/json/new?about:blank', method='PUT')
  tab = json.loads(urllib.request.urlopen(request, timeout=10).read())
  ws = websocket.create_connection(tab['webSocketDebuggerUrl'], timeout=30)
  calls = iter(range(1, 1_000_000))

  def send(method, **params):
    ws.send(json.dumps({'id': next(calls), 'method': method, 'params': params}))

  for domain in ('Runtime', 'Log', 'Network', 'Page'):
    send(f'{domain}.enable')
  send('Page.navigate', url=url)
  errors, loaded, deadline = [], None, time.time() + 30
  while time.time() < deadline and (loaded is None or time.time() < loaded + settle):
    ws.settimeout(max(0.1, min(deadline, (loaded or deadline) + settle) - time.time()))
    try:
      message = json.loads(ws.recv())
    except websocket.WebSocketTimeoutException:
      continue
    if message.get('method') == 'Page.loadEventFired':
      loaded = time.time()
    errors += [error] if (error := problem(message.get('method'), message.get('params', {}))) else []
  if screenshot is not None:
    send('Page.captureScreenshot', format='png')
    while True:
      message = json.loads(ws.recv())
      if 'result' in message and 'data' in message['result']:
        screenshot.write_bytes(base64.b64decode(message['result']['data']))
        break
  ws.close()
  return errors


def problem(method: str | None, params: dict) -> str | None:
  """The error a DevTools event reports, in words; None for any other event."""
  if method == 'Runtime.consoleAPICalled' and params['type'] in ('error', 'warning', 'assert'):
    return f"console.{params['type']}: " + ' '.join(str(a.get('value', a.get('description'))) for a in params['args'])
  if method == 'Runtime.exceptionThrown':
    return f"exception: {params['exceptionDetails'].get('text')}"
  if method == 'Log.entryAdded' and params['entry']['level'] in ('error', 'warning'):
    return f"{params['entry']['level']}: {params['entry']['text']} {params['entry'].get('url', '')}"
  if method == 'Network.loadingFailed' and not params.get('canceled'):
    return f"failed load: {params.get('errorText')}"
  return None


def main(argv=None) -> int:
  p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('site', help='the built site (sphinx -b html docs SITE)')
  p.add_argument('--pages', default='index', help='comma-separated pages, without .html (default: index)')
  p.add_argument('--all', action='store_true', help='every page of the site')
  p.add_argument('--out', help='write a screenshot of each of --pages here')
  p.add_argument('--chromium', default='chromium', help='the Chromium binary (default: chromium)')
  args = p.parse_args(argv)
  site = Path(args.site)
  try:
    require((site / 'index.html').is_file(), f'{site} holds no built site (no index.html): build it with '
            'python -m sphinx -b html docs ' + str(site))
    require(shutil.which(args.chromium) is not None, f'no {args.chromium} here: apt-get install chromium')
    pages = ([p.relative_to(site).with_suffix('').as_posix() for p in sorted(site.rglob('*.html'))
              if p.relative_to(site).parts[0] not in ('_static', '_sources')] if args.all else args.pages.split(','))
  except UserError as e:
    report('check_pages', str(e))
    return 2
  out = Path(args.out) if args.out else None
  if out:
    out.mkdir(parents=True, exist_ok=True)
  failed = 0
  with served(site) as base, chromium(args.chromium) as port:
    for page in pages:
      shot = out / f"{page.replace('/', '_')}.png" if out and page in args.pages.split(',') else None
      errors = visit(port, f'{base}/{page}.html', shot)
      failed += bool(errors)
      print(f"{page}: {'; '.join(errors) if errors else 'no errors'}" + (f' (screenshot {shot})' if shot else ''))
  print(f'{len(pages)} pages, {failed} with errors')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
