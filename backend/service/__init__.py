"""The backend service: the model behind the HTTP API of docs/service-api.md (`rs2sam2 serve`).

Modules: `config` (settings), `schemas` (request/response bodies), `security` (token, body limit,
allowed paths), `jobs` (the job store and the single worker that runs the model), `app` (FastAPI
routes and error handling), `cli` (`rs2sam2 serve`).
"""
