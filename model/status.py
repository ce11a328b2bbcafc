"""Exit 0 when the run whose last checkpoint is given has finished N epochs
(used by `make train` to skip a teacher that is already trained)."""
import sys
from pathlib import Path

import torch

if __name__ == "__main__":
    path, epochs = Path(sys.argv[1]), int(sys.argv[2])
    if not path.exists():
        sys.exit(1)
    ck = torch.load(path, map_location="cpu", weights_only=False)
    sys.exit(0 if ck.get("epoch", -1) + 1 >= epochs else 1)
