"""The classic PyTorch VAE loop on the benchmark's data, for a same-machine comparison with jaxae.

  pip install torch            # not a jaxae dependency; use any environment that has it
  python scripts/compare_pytorch.py [--dataloader] [--fused-adam] [--epochs 3] [--out torch.json]

The model and loss follow pytorch/examples `vae/main.py` (784-400-20-400-784,
ReLU, summed binary cross-entropy + KL, Adam 1e-3, batch 128), on the same
59,904 synthetic 28x28 images as `scripts/benchmark.py`; batches are slices of a
permuted tensor, or (`--dataloader`) come from a `DataLoader` over a
`TensorDataset` as in the example. Reports the median of
`--epochs` epochs after one warm-up, like the benchmark.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np

BATCH = 128


def batches(torch, data, dataloader: bool):
  """Shuffled batches of `data` [N, 784]: a DataLoader as in the example, or slices of a permuted tensor."""
  if dataloader:
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=BATCH, shuffle=True)
    return (x for (x,) in loader)
  return (data[i] for i in torch.randperm(data.shape[0]).split(BATCH))


def vae_epoch(torch, model, opt, data, dataloader: bool) -> float:
  """One epoch of the classic loop over `data` [N, 784]; returns the mean loss per example."""
  nn_f = torch.nn.functional
  total = 0.0
  for x in batches(torch, data, dataloader):
    h = nn_f.relu(model['fc1'](x))
    mu, logvar = model['fc21'](h), model['fc22'](h)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    recon = torch.sigmoid(model['fc4'](nn_f.relu(model['fc3'](z))))
    loss = nn_f.binary_cross_entropy(recon, x, reduction='sum') - 0.5 * torch.sum(
        1 + logvar - mu.pow(2) - logvar.exp())
    opt.zero_grad()
    loss.backward()
    opt.step()
    total += loss.item()
  return total / data.shape[0]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--epochs', type=int, default=3)
  p.add_argument('--examples', type=int, default=59_904)
  p.add_argument('--fused-adam', action='store_true', help='torch.optim.Adam(fused=True)')
  p.add_argument('--dataloader', action='store_true', help='batches from a DataLoader, as in the example')
  p.add_argument('--out', help='write the JSON report here too')
  args = p.parse_args(argv)
  try:
    import torch
  except ImportError:
    print('compare_pytorch: error: torch is not installed; run this script in an environment with torch',
          file=sys.stderr)
    return 2
  torch.manual_seed(0)
  layers = {'fc1': (784, 400), 'fc21': (400, 20), 'fc22': (400, 20), 'fc3': (20, 400), 'fc4': (400, 784)}
  model = torch.nn.ModuleDict({k: torch.nn.Linear(*v) for k, v in layers.items()})
  opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=args.fused_adam or None)
  data = torch.from_numpy(np.random.default_rng(0).random((args.examples, 784), np.float32))
  times = []
  for _ in range(args.epochs + 1):  # the first is a warm-up
    t0 = time.perf_counter()
    loss = vae_epoch(torch, model, opt, data, args.dataloader)
    times.append(time.perf_counter() - t0)
  report = {'torch': torch.__version__, 'threads': torch.get_num_threads(), 'fused_adam': args.fused_adam,
            'dataloader': args.dataloader,
            'epoch_s_median': statistics.median(times[1:]), 'epoch_s_all': times[1:], 'final_train_loss': loss}
  print(json.dumps(report))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(report, f, indent=2)
  return 0


if __name__ == '__main__':
  sys.exit(main())
