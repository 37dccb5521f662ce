"""Every ```python block of README.md runs, in order, in one namespace."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(text: str) -> list[str]:
  return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_blocks_run():
  blocks = python_blocks(README.read_text())
  assert blocks, "README.md has no ```python block"
  namespace = {"__name__": "readme"}
  for i, block in enumerate(blocks):
    try:
      exec(compile(block, f"README.md:block{i}", "exec"), namespace)
    except Exception as err:  # name the block that failed
      raise AssertionError(f"README.md python block {i} failed:\n{block}") from err
