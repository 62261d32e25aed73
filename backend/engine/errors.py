"""Engine errors: `UserError`s that also carry a machine-readable code (the service's error codes)."""

from __future__ import annotations

from backend.errors import UserError


class EngineInputError(UserError):
    """Bad input to a run; `code` names the kind of mistake for API clients."""

    code = "bad_input"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class PhraseError(EngineInputError):
    code = "bad_phrase"


class RasterError(EngineInputError):
    code = "not_a_raster"


class NoCrsError(EngineInputError):
    code = "no_crs"


class AreaError(EngineInputError):
    code = "bad_area"


class OutputExistsError(EngineInputError):
    code = "output_exists"


class OutputWriteError(EngineInputError):
    """The output could not be written (a full disk, a file-size limit …); nothing was written."""

    code = "write_failed"


class ModelOutOfMemoryError(UserError):
    """The model ran out of memory on a tile even one phrase at a time."""

    code = "out_of_memory"
