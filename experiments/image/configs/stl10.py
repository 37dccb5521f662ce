"""STL-10 (96×96, 5,000 labelled training images), the paper's second image set (Figures 3, 5).

The CIFAR-10 setting of `cifar10.py` at the native resolution: ResNet-18 with a stride-2 stem
(Grad-CAM on a 24×24×128 map), LIME/KernelSHAP on 12×12 grid cells (64 segments), hard curves
with 576 px per point up to 50% (1/16 of the image per point, as 64 px on 32×32). 500 training
images are held out for validation. The reference gives no STL-10 schedule: the epochs of
`cifar10.py` are kept (more steps per image would overfit 4,500 images faster; lower them with
`--config.pretrain.steps`). `--config=.../stl10.py:gradcam|lime|kernel_shap`.
"""

from experiments.image.configs.cifar10 import image_config


def get_config(explainer: str = "gradcam"):
  return image_config(explainer, name="stl10", side=96, num_train=4500)
