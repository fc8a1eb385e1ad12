import pathlib
import sys

# The loop reference and the batch strategies beside this file import by plain name in any import mode.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
