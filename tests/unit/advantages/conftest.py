import pathlib
import sys

# Import hgpo from this checkout without installing it, and the helpers beside this file in any import mode.
sys.path.insert(0, str(pathlib.Path(__file__).parents[3]))
sys.path.insert(0, str(pathlib.Path(__file__).parent))
