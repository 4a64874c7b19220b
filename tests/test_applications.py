"""Evaluation and applications: PCA, likelihood bounds, AUROC, probes, one-class training, and the suites end to end."""

import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny
from sklearn.decomposition import PCA as SkPCA
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from jaxae import config as config_lib
from jaxae import data, losses, models, pca, steps
from jaxae.errors import UserError
from jaxae.evaluation import anomaly, compression, probe
from jaxae.loop import scan, train
from jaxae.runs import load

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'evaluate.py'
evaluate_script = runpy.run_path(str(SCRIPT))  # main() in-process; test_evaluation runs it as a subprocess
DIGITS = data.load_digits()['train']


def test_pca_matches_scikit_learn_and_streams_in_batches():
  x = DIGITS['image']
  flat = x.reshape(len(x), -1)
  sk = SkPCA(8, svd_solver='full').fit(flat)
  p = pca.fit(x, 8, batch_size=500)  # four batches
  np.testing.assert_allclose(np.asarray(pca.reconstruct(p, x)).reshape(len(x), -1),
                             sk.inverse_transform(sk.transform(flat)), atol=1e-5)
  np.testing.assert_allclose(p.explained_variance, sk.explained_variance_, rtol=1e-4)
  np.testing.assert_allclose(p.explained_variance_ratio, sk.explained_variance_ratio_, rtol=1e-4)
  np.testing.assert_allclose(p.components @ p.components.T, np.eye(8), atol=1e-5)
  with pytest.raises(UserError, match='n_components'):
    pca.fit(x, 65)


def test_linear_tied_autoencoder_reaches_pca(tmp_path):
  """The optimum of a linear autoencoder under squared error is the PCA subspace (Baldi & Hornik 1989)."""
  config = config_lib.resolve({'model': 'tied_ae', 'hidden': (), 'likelihood': 'gaussian', 'latent_dim': 4,
                               'learning_rate': 0.01, 'epochs': 60})
  result = train.train_and_evaluate(config, tmp_path, progress=False)
  splits = data.prepare(config)
  x = splits.train['image']
  ae_mse = float(np.mean((np.asarray(models.get('tied_ae').decode(
      result.state, models.get('tied_ae').encode(result.state, x), likelihood='gaussian')) - x) ** 2))
  pca_mse = float(np.mean((compression.pca_reconstruct(x, x, 4)[0] - x) ** 2))
  assert 0.98 * pca_mse < ae_mse < 1.05 * pca_mse  # not better than the optimum, and close to it


def linear_gaussian(seed=0, d=4, latent=2):
  """p(z) = N(0, I), p(x|z) = N(Wz + b, I): log p(x) = log N(x; b, W W^T + I), and the exact posterior."""
  rng = np.random.default_rng(seed)
  w, b = rng.standard_normal((d, latent)), rng.standard_normal(d)
  x = rng.standard_normal(d) * 2
  cov = w @ w.T + np.eye(d)
  diff = x - b
  log_px = -0.5 * (d * np.log(2 * np.pi) + np.linalg.slogdet(cov)[1] + diff @ np.linalg.solve(cov, diff))
  post_cov = np.linalg.inv(w.T @ w + np.eye(latent))
  post_mean = post_cov @ w.T @ diff
  return w, b, x, log_px, post_mean, post_cov


def log_weights_fn(w, b, x, q_mean, q_chol, k: int, batch: int):
  """`key -> [k, batch]` log p(x, z) - log q(z) for z ~ N(q_mean, q_chol q_chol^T), `batch` independent columns."""
  w, b, x, q_mean, q_chol = (jnp.asarray(v, jnp.float32) for v in (w, b, x, q_mean, q_chol))

  def fn(key):
    eps = jax.random.normal(key, (k, batch, q_mean.shape[0]))
    z = q_mean[None, None] + eps @ q_chol.T
    log_px_z = -0.5 * jnp.sum(((x - b)[None, None] - z @ w.T) ** 2, -1) - 0.5 * x.shape[0] * jnp.log(2 * jnp.pi)
    log_pz = losses.gaussian_log_density(z, 0.0, jnp.zeros_like(z))
    log_q = losses.gaussian_log_density(eps, 0.0, jnp.zeros_like(eps)) - jnp.sum(jnp.log(jnp.diag(q_chol)))
    return log_px_z + log_pz - log_q

  return fn


def test_iwae_bound_is_exact_under_the_true_posterior_below_log_p_otherwise_and_tightens_with_k():
  w, b, x, log_px, post_mean, post_cov = linear_gaussian()
  exact = log_weights_fn(w, b, x, post_mean, np.linalg.cholesky(post_cov), 10, 3)
  np.testing.assert_allclose(losses.iwae_bound_chunked(exact, jax.random.key(0), 10, 10), log_px, rtol=1e-5)
  # a worse q: the bound is below log p(x) in expectation and rises with K (mean over 400 independent estimates)
  bounds = {k: float(jnp.mean(losses.iwae_bound_chunked(log_weights_fn(w, b, x, 0.3 * post_mean, 2 * np.eye(2),
                                                                         min(k, 64), 400),
                                                          jax.random.key(k), k, 64))) for k in (1, 10, 1000)}
  assert bounds[1] < bounds[10] < bounds[1000] < log_px + 0.01
  assert log_px - bounds[1000] < 0.1 * (log_px - bounds[1])


def test_chunked_iwae_bound_is_the_bound_over_the_chunks_draws():
  w, b, x, _, post_mean, _ = linear_gaussian(1)
  fn = log_weights_fn(w, b, x, post_mean, np.eye(2), 3, 5)
  key = jax.random.key(3)
  draws = jnp.concatenate([fn(jax.random.fold_in(key, j)) for j in range(3)])[:7]  # K = 7 in chunks of 3
  np.testing.assert_allclose(losses.iwae_bound_chunked(fn, key, 7, 3), losses.iwae_bound(draws), rtol=1e-6)


def test_auroc_and_roc_curve_match_scikit_learn_with_ties():
  rng = np.random.default_rng(0)
  pos, neg = rng.integers(0, 6, 50).astype(float) + 1, rng.integers(0, 6, 70).astype(float)  # many ties
  labels, scores = np.r_[np.ones(50), np.zeros(70)], np.r_[pos, neg]
  assert anomaly.auroc(pos, neg) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
  fpr, tpr, _ = sk_roc_curve(labels, scores, drop_intermediate=False)
  ours = anomaly.roc_curve(pos, neg)
  np.testing.assert_allclose(ours[0], fpr)
  np.testing.assert_allclose(ours[1], tpr)
  assert anomaly.auroc([2, 3], [0, 1]) == 1 and anomaly.auroc([0, 1], [2, 3]) == 0
  assert anomaly.auroc([1, 1], [1, 1, 1]) == 0.5


def test_probes_on_separable_data():
  rng = np.random.default_rng(0)
  centres = 5 * rng.standard_normal((3, 4))
  y = rng.integers(0, 3, 600)
  z = centres[y] + 0.3 * rng.standard_normal((600, 4))
  assert probe.linear_probe_accuracy(z[:400], y[:400], z[400:], y[400:]) == 1.0
  np.testing.assert_array_equal(probe.knn_predict(z[:400], y[:400], z[400:]), y[400:])
  # k-NN against a hand-made case: the 3 nearest of 0.9 are 1, 1.2 (label 1) and 0 (label 0)
  np.testing.assert_array_equal(probe.knn_predict(np.array([[0.], [1.], [1.2], [5.]]), np.array([0, 1, 1, 0]),
                                                  np.array([[0.9]]), k=3), [1])


def test_train_classes_keeps_only_those_classes_for_training():
  config = config_lib.resolve({'train_classes': (0, 3)})
  assert config_lib.resolve({'train_classes': (0,)})['train_classes'] == (0,)
  splits = data.prepare(config)
  assert set(np.unique(splits.train['label'])) == {0, 3} and len(np.unique(splits.eval['label'])) == 10
  with pytest.raises(UserError, match=r'names class\(es\) 12, which the digits training set does not have'):
    data.prepare(config_lib.resolve({'train_classes': (0, 12)}))


def test_evaluate_accepts_numpy_images():
  config = config_lib.resolve(tiny())
  model = models.get('vae')
  state = models.create_state(model, jax.random.key(0), config, {'image': DIGITS['image'][:1]})
  x = DIGITS['image'][:100]
  sums = scan.evaluate(steps.bind(model.eval_step, config), state, {'image': x}, jax.random.key(1), batch_size=32)
  assert float(sums['count']) == 100 and np.isfinite(float(sums['nelbo']))


def run_script(*args):
  return subprocess.run([sys.executable, str(SCRIPT), *map(str, args), '--no-progress'], capture_output=True,
                        text=True, timeout=300)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('runs')
  train.train_and_evaluate(tiny(model='vae', latent_dim=2, epochs=3), root / 'vae', progress=False)
  train.train_and_evaluate(tiny(model='ae', latent_dim=4, epochs=20, train_classes=(0,)), root / 'ae0',
                           progress=False)
  return root


def test_suites_on_a_vae(runs, tmp_path):
  proc = run_script(runs / 'vae', '--suites', 'compression,likelihood,latent,denoising,probe', '--iwae-samples',
                    '200', '--out', tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  r = json.loads((tmp_path / 'results.json').read_text())['vae']
  lik = r['likelihood']['metrics']
  assert lik['iwae_nll'] < lik['nelbo'] and lik['iwae_samples'] == 200 and lik['binarize'] == 'none'
  assert lik['iwae_gflop_per_s'] > 0 and lik['iwae_memory_bytes'] > 0
  comp = r['compression']['metrics']
  assert comp['latent_dim'] == 2 and comp['mse_vs_pca'] == pytest.approx(comp['mse_per_pixel'] /
                                                                          comp['pca_mse_per_pixel'])
  den = r['denoising']['metrics']
  assert den['gaussian0.1_noisy_psnr_db'] == pytest.approx(20.0, abs=0.2)  # MSE of N(0, 0.1^2) noise is 0.01
  assert den['gaussian0.5_psnr_db'] > den['gaussian0.5_noisy_psnr_db']  # a VAE's decoder removes strong noise
  assert 0.1 < r['probe']['metrics']['pca_linear_probe_accuracy'] <= 1
  figures = {p.name for p in (tmp_path / 'figures').iterdir()}
  assert {'vae-latent-manifold.png', 'vae-latent-codes.png', 'vae-latent-interpolation.png',
          'vae-compression-vs_pca.png', 'vae-denoising-masking0.25.png'} <= figures
  assert '## likelihood' in (tmp_path / 'report.md').read_text()


def test_anomaly_suite_on_a_one_class_autoencoder(runs, tmp_path):
  proc = run_script(runs / 'ae0', '--suites', 'anomaly', '--out', tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  m = json.loads((tmp_path / 'results.json').read_text())['ae0']['anomaly']['metrics']
  per_class = [m[f'auroc_class_{c}'] for c in range(1, 10)]
  assert 'auroc_class_0' not in m and m['auroc_mean'] == pytest.approx(np.mean(per_class))
  assert m['auroc_mean'] > 0.8  # digits other than 0 reconstruct worse than held-out 0s


@pytest.mark.parametrize('args,message', [
    (('vae', '--suites', 'anomaly'), 'the anomaly suite needs a run trained on some classes only'),
    (('ae0', '--suites', 'likelihood'),
     'the likelihood suite needs a model with a likelihood (hvae, iwae, vae); ae has'),
    (('ae0', '--suites', 'probe'), 'the probe suite needs a run trained on labelled images of several classes'),
    (('vae', '--suites', 'likelihood', '--iwae-samples', '0'), '--iwae-samples must be positive, got 0'),
])
def test_suites_refuse_runs_they_do_not_fit(runs, args, message, capsys):
  before = sorted(p.relative_to(runs) for p in runs.rglob('*'))
  assert evaluate_script["main"]([str(runs / args[0]), *args[1:], '--no-progress']) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'evaluate: error: {message}') and len(err.strip().splitlines()) == 1
  assert sorted(p.relative_to(runs) for p in runs.rglob('*')) == before


def test_load_refuses_a_missing_checkpoint_step(runs):
  with pytest.raises(UserError, match='has no checkpoint 999'):
    load(runs / 'vae', step=999)


def test_runs_written_before_a_config_key_existed_still_load(runs, tmp_path):
  shutil.copytree(runs / 'vae', tmp_path / 'old')
  saved = json.loads((tmp_path / 'old' / 'config.json').read_text())
  del saved['train_classes'], saved['iwae_samples']  # keys newer than the run
  (tmp_path / 'old' / 'config.json').write_text(json.dumps(saved))
  loaded = load(tmp_path / 'old')
  assert loaded.config['iwae_samples'] == 1 and loaded.config['train_classes'] == ()
