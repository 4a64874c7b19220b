"""PyTorch peers of jaxae's conv families, the same networks and work per step, for `benchmark.py --torch`.

Not a jaxae dependency: `pip install torch` (CPU wheels) where you benchmark. Each peer is a plain PyTorch
loop (NCHW, `nn.Conv2d(k=4, s=2, p=1)` and `nn.ConvTranspose2d(k=4, s=2, p=1)`: the shapes of jaxae's 'SAME'
stride-2 4x4 layers), built from the jaxae config the benchmark uses:

- `vae` (arch=conv): encoder convs `conv_features` (ReLU) -> linear to 2 x latent_dim; decoder linear ->
  ReLU -> transposed convs back (ReLU but the last); summed Bernoulli cross-entropy from logits + KL; Adam.
- `gan`/`dcgan` (arch=conv): D convs (LeakyReLU 0.2, dropout `d_dropout`) -> linear to a logit; G linear ->
  ReLU -> transposed convs (ReLU, tanh output); per step one D update on real and G(z) (G not differentiated)
  and `n_generator` G updates, each with fresh z, through a frozen D, non-saturating losses, Adam(lr, b1);
  jaxae's `gan` step does the same work. With `norm`/`d_norm` = 'batch' (the `dcgan` preset), `nn.BatchNorm2d`
  (no bias in the layer before it) where jaxae puts its batch norm: every layer of G but the output, of D but
  the input.
"""

import math


def _decoder(torch, features, latent_dim, shape, out, norm='none'):
  """Linear -> [C_last, H/s, W/s] -> transposed convs back to `shape` (C, H, W); `out` after the last."""
  nn = torch.nn
  c, h, w = shape
  s, rev, bn = 2 ** len(features), list(features[::-1]), norm == 'batch'
  bn_relu = lambda f: [nn.BatchNorm2d(f)] * bn + [nn.ReLU()]
  layers = [nn.Linear(latent_dim, rev[0] * (h // s) * (w // s), bias=not bn),
            nn.Unflatten(1, (rev[0], h // s, w // s)), *bn_relu(rev[0])]
  for i, f in enumerate(rev[1:]):
    layers += [nn.ConvTranspose2d(rev[i], f, 4, 2, 1, bias=not bn), *bn_relu(f)]
  return nn.Sequential(*layers, nn.ConvTranspose2d(rev[-1], c, 4, 2, 1), out)


def _encoder(torch, features, out_dim, shape, activation, dropout=0.0, norm='none'):
  nn = torch.nn
  c, h, w = shape
  layers, prev = [], c
  for i, f in enumerate(features):
    bn = norm == 'batch' and i > 0
    layers += [nn.Conv2d(prev, f, 4, 2, 1, bias=not bn), *[nn.BatchNorm2d(f)] * bn, activation(), nn.Dropout(dropout)]
    prev = f
  s = 2 ** len(features)
  return nn.Sequential(*layers, nn.Flatten(), nn.Linear(prev * (h // s) * (w // s), out_dim))


def peer(torch, config: dict, shape=(1, 28, 28)):
  """`epoch(images) -> mean headline loss` for the family `config['model']` (conv): one pass over `images`
  (`[N, C, H, W]` uint8 tensor) in shuffled batches of `config['batch_size']`, pixels scaled per batch."""
  nn_f, features, latent = torch.nn.functional, tuple(config['conv_features']), config['latent_dim']
  torch.manual_seed(0)
  if config['model'] == 'vae':
    enc = _encoder(torch, features, 2 * latent, shape, torch.nn.ReLU)
    dec = _decoder(torch, features, latent, shape, torch.nn.Identity())
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=config['learning_rate'])

    def step(x):
      mu, logvar = enc(x).chunk(2, dim=1)
      z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
      rec = nn_f.binary_cross_entropy_with_logits(dec(z), x, reduction='sum')
      loss = (rec - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())) / x.shape[0]
      opt.zero_grad()
      loss.backward()
      opt.step()
      return loss.item()
  elif config['model'] in ('gan', 'dcgan'):
    d = _encoder(torch, features, 1, shape, lambda: torch.nn.LeakyReLU(0.2), config['d_dropout'], config['d_norm'])
    g = _decoder(torch, features, latent, shape, torch.nn.Tanh(), config['norm'])
    betas = (config['adam_b1'], config['adam_b2'])
    opt_d = torch.optim.Adam(d.parameters(), lr=config['learning_rate'], betas=betas)
    opt_g = torch.optim.Adam(g.parameters(), lr=config['learning_rate'], betas=betas)

    def step(x):
      x = 2 * x - 1
      with torch.no_grad():
        fake = g(torch.randn(x.shape[0], latent))
      real_out, fake_out = d(x), d(fake)
      d_loss = (nn_f.binary_cross_entropy_with_logits(real_out, torch.ones_like(real_out))
                + nn_f.binary_cross_entropy_with_logits(fake_out, torch.zeros_like(fake_out)))
      opt_d.zero_grad()
      d_loss.backward()
      opt_d.step()
      d.requires_grad_(False)
      for _ in range(config.get('n_generator', 1)):  # jaxae's generator updates per step, each with fresh z
        out = d(g(torch.randn(x.shape[0], latent)))
        g_loss = nn_f.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
      d.requires_grad_(True)
      return d_loss.item()
  else:
    raise ValueError(f"no PyTorch peer for {config['model']}")

  def epoch(images) -> float:
    total, n, b = 0.0, images.shape[0], config['batch_size']
    for index in torch.randperm(n).split(b):
      total += step(images[index].float() / 255) * len(index)
    return total / n

  return epoch


def parameter_count(torch, config: dict, shape=(1, 28, 28)) -> int:
  """Trainable parameters of the peer's networks (the benchmark checks they match jaxae's)."""
  features, latent = tuple(config['conv_features']), config['latent_dim']
  out_dim, d_norm = (2 * latent, 'none') if config['model'] == 'vae' else (1, config['d_norm'])
  nets = [_encoder(torch, features, out_dim, shape, torch.nn.ReLU, norm=d_norm),
          _decoder(torch, features, latent, shape, torch.nn.Identity(), config['norm'])]
  return sum(math.prod(p.shape) for net in nets for p in net.parameters())
