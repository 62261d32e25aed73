"""Scale-out under torchrun: tiles sharded across ranks, pieces gathered and merged on rank 0.

Only vectors travel between ranks (each rank's pieces), so objects that cross shard edges are
merged on rank 0 exactly as objects crossing tile edges are in one process.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

from backend.engine.tiling import Tile
from backend.engine.vectorise import Piece

# Ranks wait for the slowest shard when gathering; a long mosaic may take hours.
GATHER_TIMEOUT = dt.timedelta(hours=12)


@dataclass(frozen=True)
class RankInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, tiles: list[Tile]) -> list[Tile]:
        """Round-robin, so every rank gets tiles from all over the raster (similar work per rank)."""
        return tiles[self.rank :: self.world_size]


def rank_from_environment() -> RankInfo | None:
    """The torchrun rank of this process, or None when not launched by torchrun with several ranks."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    return RankInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def start(info: RankInfo) -> None:
    import torch.distributed as dist

    if not dist.is_initialized():
        # gloo on every device: only Python objects (pieces) are exchanged, never tensors.
        dist.init_process_group("gloo", rank=info.rank, world_size=info.world_size, timeout=GATHER_TIMEOUT)


def gather_pieces(info: RankInfo, pieces: list[Piece]) -> list[Piece] | None:
    """Every rank's pieces on rank 0 (None elsewhere)."""
    import torch.distributed as dist

    collected: list[list[Piece]] | None = [[] for _ in range(info.world_size)] if info.is_main else None
    dist.gather_object(pieces, collected, dst=0)
    if collected is None:
        return None
    return [piece for rank_pieces in collected for piece in rank_pieces]


def stop() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
