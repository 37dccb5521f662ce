"""Data: scikit-learn's bundled and generated sets offline, tfds data sources for real images."""

from idexpo_jax.data.rrr_data import (DecoyDigits, ToyColorMasks, load_decoy_digits,
                                      load_toy_color, make_toy_color, toy_color_masks)
from idexpo_jax.data.sklearn_data import (Dataset, Split, batches, load_digits_images,
                                          load_regression, load_tabular_classification)
from idexpo_jax.data.tfds_data import (default_data_dir, load_tfds_images, open_source,
                                       prepare_command, read_examples, reduce_size)
