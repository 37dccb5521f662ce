"""The image experiments (CIFAR-10, STL-10): the study driver run on `experiments/image/configs`.

  python -m experiments.image.main --config=experiments/image/configs/cifar10.py:gradcam

One driver for every data set: `experiments.study` pre-trains with cross-entropy, fine-tunes each
method from that checkpoint, selects on validation and writes `<output_dir>/<set>_<explainer>.json`
with the figures. This entry point adds only the multi-host start (`jax.distributed`, a no-op on
one host; see docs/scale.md).
"""

from absl import app

from experiments.study import main as study_main
from idexpo_jax.training.parallel import initialize_distributed

if __name__ == "__main__":
  initialize_distributed()
  app.run(study_main.main)
