"""Sample-quality measures against closed forms, jaxae.load, and scripts/evaluate.py."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import matplotlib.figure
import numpy as np
import pytest
import scipy.linalg
from conftest import saved_run, tiny

from jaxae import data, evaluation, results
from jaxae.errors import UserError
from jaxae.evaluation import classifier, samples
from jaxae.loop import train
from jaxae.runs import load

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'evaluate.py'


def test_parzen_equals_the_exact_log_density_of_a_gaussian_mixture():
  """Parzen windows of width sigma on S centres are exactly that equal-weight isotropic mixture."""
  rng = np.random.default_rng(0)
  centres, sigma = rng.random((300, 20)), 0.3
  x = centres[rng.integers(0, 300, 50)] + sigma * rng.standard_normal((50, 20))
  sq = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
  exact = scipy.special.logsumexp(-sq / (2 * sigma**2), axis=1) - np.log(300) - 10 * np.log(2 * np.pi * sigma**2)
  np.testing.assert_allclose(samples.parzen_log_likelihood(centres, x, sigma), exact, rtol=1e-4)
  # memory-bounded: small x batches and sample chunks (a divisor of S is used) give the same numbers
  np.testing.assert_allclose(samples.parzen_log_likelihood(centres, x, sigma, batch_size=7, chunk=64), exact,
                             rtol=1e-4)


def test_parzen_bandwidth_is_chosen_on_validation_data_with_a_standard_error():
  rng = np.random.default_rng(1)
  draw = lambda n: 0.2 * rng.standard_normal((n, 5))
  result = samples.parzen(draw(2000), draw(300), draw(400), sigmas=(0.02, 0.1, 0.5, 2.0))
  scores = result['parzen_valid_scores']
  assert result['parzen_sigma'] == max(scores, key=scores.get) == 0.1
  assert 0 < result['parzen_se'] < 0.5 and np.isfinite(result['parzen_ll'])


def test_frechet_distance_against_closed_form_for_two_gaussians():
  m1, m2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
  expected = 1 + 4 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)  # diagonal: ||m1-m2||^2 + sum (sqrt a - sqrt b)^2
  assert samples.frechet_distance(m1, np.diag(a), m2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
  rng = np.random.default_rng(2)
  c1, c2 = (lambda q: q @ q.T)(rng.standard_normal((6, 6))), (lambda q: q @ q.T)(rng.standard_normal((6, 6)))
  reference = np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
  assert samples.frechet_distance(np.zeros(6), c1, np.zeros(6), c2) == pytest.approx(reference, rel=1e-6)
  assert abs(samples.frechet_distance(m1, np.diag(a), m1, np.diag(a))) < 1e-9


def test_class_histogram_and_a_classifier_that_learns_digits():
  np.testing.assert_allclose(samples.class_histogram(np.array([0, 2, 2, 3]), 4), [0.25, 0, 0.5, 0.25])
  digits = data.load_digits()['train']
  x, y = digits['image'], digits['label']
  clf = classifier.train(jax.random.key(0), x[:1500], y[:1500], x[1500:], y[1500:], epochs=15)
  assert clf.accuracy > 0.9
  assert classifier.features(clf, x[:10]).shape == (10, 128)


def test_the_samples_suite_trains_one_classifier_per_dataset_and_names_it(tmp_path, monkeypatch):
  """Two runs on the same data are measured with the same cached classifier (trained once); other data get
  another; a damaged cache entry is trained again, bitwise the same (key 0)."""
  monkeypatch.setenv('JAXAE_CACHE', str(tmp_path / 'cache'))
  trained, original = [], classifier.train
  monkeypatch.setattr(classifier, 'train', lambda *a, **k: trained.append(1) or original(*a, **k))

  def evaluate(name, model='gan', **overrides):
    saved_run(tmp_path / name, model, **overrides)
    return samples.run(load(tmp_path / name), jax.random.key(0), num_samples=200, classifier_epochs=2)[0]

  a, b = evaluate('gan'), evaluate('vae', 'vae')
  assert len(trained) == 1 and a['classifier_hash'] == b['classifier_hash'] and a['data_hash'] == b['data_hash']
  assert a['classifier_accuracy'] == b['classifier_accuracy'] > 0.5 and a['floor_images'] == 200
  other = evaluate('other', holdout=0.2)
  assert len(trained) == 2 and other['data_hash'] != a['data_hash'] and other['classifier_hash'] != a['classifier_hash']
  entry = classifier.cache_dir() / f"{a['data_hash']}-e2"
  weights = entry / classifier.FILES[0]
  weights.write_bytes(weights.read_bytes()[:-8] + bytes(8))  # damaged
  again = evaluate('again')
  assert len(trained) == 3 and again['classifier_hash'] == a['classifier_hash']
  assert again['classifier_fd'] == a['classifier_fd']  # the same run (saved_run is seeded), the same classifier
  assert (again['kid'], again['precision'], again['recall']) == (a['kid'], a['precision'], a['recall'])
  assert a['kid'] > 0 and a['kid_std'] >= 0 and 0 <= a['precision'] <= 1 and 0 <= a['recall'] <= 1
  assert sorted(p.name for p in classifier.cache_dir().iterdir()) == sorted([entry.name, f"{other['data_hash']}-e2"])


def test_load_returns_the_trained_state_and_refuses_missing_runs(tmp_path):
  result = train.train_and_evaluate(tiny(model='gan', epochs=1, latent_dim=4), tmp_path / 'run', progress=False)
  loaded = load(tmp_path / 'run')
  assert loaded.model.__name__ == 'jaxae.models.gan' and loaded.config == result.config
  assert loaded.step == 26  # steps done
  for a, b in zip(jax.tree.leaves(loaded.state), jax.tree.leaves(result.state), strict=True):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(UserError, match='holds no run'):
    load(tmp_path / 'nothing')
  (tmp_path / 'empty').mkdir()
  (tmp_path / 'empty' / 'config.json').write_text((tmp_path / 'run' / 'config.json').read_text())
  with pytest.raises(UserError, match='has no checkpoint yet'):
    load(tmp_path / 'empty')
  assert sorted(p.name for p in (tmp_path / 'empty').iterdir()) == ['config.json']  # nothing written


def test_evaluate_script_writes_results_and_refuses_a_suite_that_does_not_fit(tmp_path):
  train.train_and_evaluate(tiny(model='gan', epochs=1, latent_dim=4), tmp_path / 'gan', progress=False)
  before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
  proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / 'gan'), '--suites', 'reconstruction'],
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2 and 'Traceback' not in proc.stderr
  assert proc.stderr.strip() == ('evaluate: error: the reconstruction suite needs an encoder; gan has none '
                                 '(a GAN only generates): use the samples suite')
  assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*')) == before
  proc = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / 'gan'), '--num-samples', '300', '--out',
                         str(tmp_path / 'eval'), '--no-progress', '--result', str(tmp_path / 'result.json'),
                         '--title', 'A GAN on digits'], capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  metrics = json.loads((tmp_path / 'eval' / 'results.json').read_text())['gan']['samples']['metrics']
  assert np.isfinite(metrics['parzen_ll']) and metrics['classifier_fd'] > 0 and 0 < metrics['classifier_accuracy']
  assert sum(metrics['class_histogram']) == pytest.approx(1.0)
  assert (tmp_path / 'eval' / 'figures' / 'gan-samples-samples.png').exists()
  assert '| gan |' in (tmp_path / 'eval' / 'report.md').read_text()
  table = (tmp_path / 'eval' / 'comparison.md').read_text().splitlines()
  assert table[0].startswith('| run | model | step | samples: classifier_fd (FD) |') and len(table) == 3
  assert table[2].startswith(f"| gan | gan | 26 | {metrics['classifier_fd']:.4g} |")
  result = results.read(tmp_path / 'result.json')  # the comparison table as a result file
  assert result['title'] == 'A GAN on digits' and result['rows'][0]['samples: classifier_fd (FD)'] == metrics[
      'classifier_fd'] and result['rows'][0]['step'] == 26


def test_the_comparison_table_has_a_row_per_run_and_each_suites_headline_numbers_with_units():
  results = {'vae': {'likelihood': {'metrics': {'nelbo': 90.123456, 'iwae_nll': 85.5, 'iwae_seconds': 3.0}},
                     'samples': {'metrics': {'classifier_fd': 41.7, 'histogram_tv': 0.13, 'parzen_ll': 204.0}}},
             'gan': {'samples': {'metrics': {'classifier_fd': 19.2, 'classifier_fd_train_images': 8.5}}}}
  table = evaluation.comparison(results, {'vae': {'model': 'vae'}, 'gan': {'model': 'gan'}}).splitlines()
  assert table == [
      '| run | model | likelihood: nelbo (nats) | likelihood: iwae_nll (nats) | samples: classifier_fd (FD) | '
      'samples: classifier_fd_train_images (FD floor) | samples: histogram_tv (TV) | samples: parzen_ll (nats) |',
      '|---|---|---|---|---|---|---|---|',
      '| vae | vae | 90.12 | 85.5 | 41.7 |  | 0.13 | 204 |',
      '| gan | gan |  |  | 19.2 | 8.5 |  |  |']


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """Four tiny runs that between them fit every suite: a VAE with 2-D codes, an AE trained on class 0 alone
  (anomaly detection), a GAN, a semi-supervised AAE with 10 labels per class."""
  root = tmp_path_factory.mktemp('suite-runs')
  configs = {'vae': tiny(model='vae', latent_dim=2, epochs=2), 'ae0': tiny(model='ae', epochs=2, train_classes=(0,)),
             'gan': tiny(model='gan', epochs=1, latent_dim=4),
             'ssaae': tiny(model='ssaae', epochs=1, latent_dim=4, labels_per_class=10, disc_hidden=(32, 32))}
  for name, config in configs.items():
    train.train_and_evaluate(config, root / name, progress=False)
  return {name: load(root / name) for name in configs}


@pytest.mark.parametrize('suite', evaluation.names())
def test_every_suite_runs_on_the_runs_it_fits_and_refuses_the_others_in_one_line(runs, suite):
  """Picked up by name: a new suite is tested here with no edit. Each fits at least one of the runs."""
  module, fitted = evaluation.get(suite), 0
  for name, loaded in runs.items():
    try:
      module.check(loaded)
    except UserError as e:
      assert '\n' not in str(e), (name, str(e))
      continue
    metrics, figures = module.run(loaded, jax.random.key(0), num_samples=200, iwae_samples=8, progress=False)
    json.dumps(metrics)  # results.json takes them as they are
    assert metrics and all(np.isfinite(v) for v in metrics.values() if isinstance(v, float)), (name, metrics)
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figures.values())
    fitted += 1
  assert fitted, f'{suite} fits none of {sorted(runs)}'


def test_the_suites_compile_each_function_once_per_shape(runs):
  """They took a new `jax.jit(lambda ...)` on every call (the denoising suite compiled about ten times)."""
  from jaxae.evaluation import anomaly, common, denoising

  loaded = runs['vae']
  x = loaded.splits.eval['image']
  fn = common.program(loaded, 'reconstruct')
  for part in (x[:100], x[100:], x):  # every shape once: 100 and 80 images, and the whole held-out set
    common.reconstruct(loaded, part)
  compiled = fn._cache_size()
  for part in (x[100:], x[:100], np.flip(x[:100], axis=0)):
    common.reconstruct(loaded, part)
  denoising.run(loaded, jax.random.key(0))  # several noise kinds and levels, on the held-out set
  assert fn._cache_size() == compiled
  assert common.program(loaded, 'reconstruct') is fn
  nelbo = common.program(loaded, 'negative_elbo')
  anomaly.scores(loaded, x[:100], jax.random.key(0))
  compiled = nelbo._cache_size()
  for i in range(1, 4):  # the anomaly and likelihood suites' -ELBO: one program per shape, whatever the key
    anomaly.scores(loaded, x[:100], jax.random.key(i))
  assert nelbo._cache_size() == compiled
  labels = loaded.splits.eval['label']
  clf = classifier.train(jax.random.key(0), x[:200], labels[:200], x[:100], labels[:100], epochs=1)
  classifier.predict(clf, x[:100])
  compiled = classifier._apply._cache_size()
  for part in (x[:100], np.flip(x[:100], axis=0)):  # one shape: one program for predictions and features
    classifier.predict(clf, part), classifier.features(clf, part)
  assert classifier._apply._cache_size() == compiled
