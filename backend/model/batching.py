"""How many phrases go through the image encoder in one forward: chunks sized to memory.

The phrase enters every Hiera block (BHF), so the encoder runs once per phrase whatever the batching;
batching only decides how many of those runs share one forward. On a GPU a larger batch uses the device
better, up to its memory. On the CPU it does not pay: measured here (docs/benchmarks.md, `rs2sam2 bench
phrases`, `tiny` at 1024 px in bf16), one phrase per forward cost 0.94–0.98× per phrase what a single
phrase did, two per forward 1.19–1.34×, all eight in one forward 1.27× (the larger activations no longer
fit the caches). So the CPU runs one phrase at a time and shares the work that does not depend on the
phrase instead.
"""

from __future__ import annotations

import torch

# Bytes of live activations per phrase per element of the first Hiera stage's feature map (B, S/4, S/4, C):
# the block keeps its input, the normalised copy, q/k/v, the attention output, the MLP's 4× hidden layer
# and the adapter's terms alive at once — about 16 copies, in the forward's dtype.
ACTIVATION_COPIES = 16
CPU_MAX_PHRASES = 1  # measured: batching phrases costs more per phrase on the CPU (the module's docstring)
GPU_MAX_PHRASES = 16
MEMORY_SHARE = 0.5  # of the memory available when the predictor is made


def per_phrase_bytes(image_size: int, first_stage_width: int, element_bytes: int = 4) -> int:
    """Peak activation memory one phrase adds to a forward (an estimate from the first stage's grid)."""
    grid = image_size // 4
    return grid * grid * first_stage_width * element_bytes * ACTIVATION_COPIES


def available_bytes(device: torch.device) -> int | None:
    """Free memory on the device now (None when it cannot be read)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def phrase_chunk_size(device: torch.device, phrase_bytes: int, available: int | None = None) -> int:
    """Phrases per forward: what half the free memory holds, at most the device's useful batch, at least 1."""
    cap = GPU_MAX_PHRASES if device.type == "cuda" else CPU_MAX_PHRASES
    free = available_bytes(device) if available is None else available
    if free is None:
        return 1
    return max(1, min(cap, int(free * MEMORY_SHARE) // max(phrase_bytes, 1)))


def chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]
