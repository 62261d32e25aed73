"""A stand-in backend that follows docs/service-api.md, for testing the plugin layer on its own.

Real HTTP on 127.0.0.1 (http.server), real GeoTIFF reading (GDAL): it answers with one rectangle
covering the middle third of the requested area, in the raster's CRS — enough to check what the
plugin sends and what it does with the answer. The real service is tested end to end elsewhere.

Run as a program it serves until killed: `python contract_server.py --port N [--token T]`.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from osgeo import gdal, osr

gdal.UseExceptions()


@dataclass
class Behaviour:
    token: str = ""
    allow_paths: bool = True
    tiles: int = 2  # progress steps per job
    seconds_per_tile: float = 0.0
    reject_phrase: str = ""  # a phrase answered with a 400 error
    empty_result: bool = False
    path_roots: tuple[str, ...] | None = None  # with allow_paths: only files under these (None: any)


@dataclass
class Job:
    job_id: str
    status: str = "queued"
    done: int = 0
    total: int = 1
    result: dict | None = None
    error: dict | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


class ContractServer:
    def __init__(self, behaviour: Behaviour | None = None, port: int = 0):
        self.behaviour = behaviour or Behaviour()
        self.requests: list[dict] = []  # what each segmentation received: {"kind", "params", "crs_wkt", ...}
        self.jobs: dict[str, Job] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler_class())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> ContractServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        for job in self.jobs.values():
            job.cancel.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the segmentation ------------------------------------------------------------------------
    def segment(self, form: dict, cancel: threading.Event | None = None, job: Job | None = None) -> dict:
        params = json.loads(form["params"])
        phrases = params.get("phrases") or []
        if not phrases:
            raise ApiError(422, "no_phrases", "Give at least one phrase.")
        for phrase in phrases:
            if self.behaviour.reject_phrase and phrase == self.behaviour.reject_phrase:
                raise ApiError(400, "bad_phrase", f"The phrase “{phrase}” has no words the model knows.")
        if "path" in form:
            if not self.behaviour.allow_paths:
                raise ApiError(403, "path_not_allowed", "This server does not read files by path.")
            roots = self.behaviour.path_roots
            if roots is not None and not any(form["path"].startswith(root) for root in roots):
                raise ApiError(403, "path_not_allowed", "that path is outside the folders this server allows")
            dataset_name, kind, source = form["path"], "path", Path(form["path"]).name
        else:
            dataset_name = f"/vsimem/{uuid.uuid4().hex}.tif"
            gdal.FileFromMemBuffer(dataset_name, form["raster"])
            kind, source = "upload", form.get("raster_filename", "raster.tif")
        try:
            dataset = gdal.Open(dataset_name)
            wkt = dataset.GetProjection()
            gt = dataset.GetGeoTransform()
            width, height, bands = dataset.RasterXSize, dataset.RasterYSize, dataset.RasterCount
            band_max = [
                float(dataset.GetRasterBand(b + 1).ComputeRasterMinMax(False)[1]) for b in range(bands)
            ]
            dataset = None
        finally:
            if kind == "upload":
                gdal.Unlink(dataset_name)
        if not wkt:
            raise ApiError(400, "no_crs", "The raster has no coordinate reference system.")
        raster_box = [gt[0], gt[3] + gt[5] * height, gt[0] + gt[1] * width, gt[3]]
        box = params.get("bbox") or raster_box
        box = [
            max(box[0], raster_box[0]),
            max(box[1], raster_box[1]),
            min(box[2], raster_box[2]),
            min(box[3], raster_box[3]),
        ]
        if box[0] >= box[2] or box[1] >= box[3]:
            raise ApiError(400, "bbox_outside", "The area is outside the raster.")
        self.requests.append(
            {
                "kind": kind,
                "params": params,
                "crs_wkt": wkt,
                "size": (width, height),
                "bands": bands,
                "band_max": band_max,
                "raster_box": raster_box,
                "path": form.get("path"),
            }
        )
        total = max(1, self.behaviour.tiles)
        for tile in range(total):
            if cancel is not None and cancel.is_set():
                return {}
            time.sleep(self.behaviour.seconds_per_tile)
            if job is not None:
                job.done = tile + 1
        features = (
            [] if self.behaviour.empty_result else [_middle_third(box, phrase, source) for phrase in phrases]
        )
        srs = osr.SpatialReference(wkt=wkt)
        authority = f"{srs.GetAuthorityName(None)}:{srs.GetAuthorityCode(None)}"
        return {
            "type": "FeatureCollection",
            "crs": {"type": "name", "properties": {"name": authority}},
            "crs_wkt": wkt,
            "features": features,
            "stats": {"tiles": total, "seconds": 0.01, "model": "stand-in"},
        }

    def _run_job(self, job: Job, form: dict) -> None:
        job.status = "running"
        try:
            result = self.segment(form, job.cancel, job)
            if job.cancel.is_set():
                job.status = "cancelled"
            else:
                job.result, job.status = result, "done"
        except ApiError as exc:
            job.error, job.status = {"code": exc.code, "message": exc.message, "http": exc.status}, "failed"

    # -- HTTP ------------------------------------------------------------------------------------
    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if not server.behaviour.token:
                    return True
                if self.headers.get("Authorization") == f"Bearer {server.behaviour.token}":
                    return True
                self._send(
                    401, {"error": {"code": "unauthorized", "message": "A valid access token is required."}}
                )
                return False

            def _form(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                message = BytesParser(policy=HTTP).parsebytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
                )
                form = {}
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    payload = part.get_payload(decode=True)
                    form[name] = payload if name == "raster" else payload.decode("utf-8")
                    if name == "raster":
                        form["raster_filename"] = part.get_filename() or "raster.tif"
                return form

            def do_GET(self):  # noqa: N802
                if not self._authorised():
                    return
                parts = self.path.strip("/").split("/")
                if parts == ["api", "v1", "health"]:
                    busy = any(j.status == "running" for j in server.jobs.values())
                    return self._send(
                        200,
                        {
                            "status": "ok",
                            "version": "0.0-test",
                            "model": {"id": "stand-in", "preset": "test", "input_size": 64, "device": "cpu"},
                            "busy": busy,
                            "allow_paths": server.behaviour.allow_paths,
                            "max_upload_mb": 50,
                        },
                    )
                if parts[:3] == ["api", "v1", "jobs"] and len(parts) >= 4 and parts[3] in server.jobs:
                    job = server.jobs[parts[3]]
                    if len(parts) == 5 and parts[4] == "result":
                        if job.status == "done":
                            return self._send(200, job.result)
                        if job.status == "failed":
                            return self._send(
                                job.error["http"],
                                {"error": {"code": job.error["code"], "message": job.error["message"]}},
                            )
                        return self._send(
                            409, {"error": {"code": "not_done", "message": "The job is not done."}}
                        )
                    error = {k: job.error[k] for k in ("code", "message")} if job.error else None
                    return self._send(
                        200,
                        {
                            "job_id": job.job_id,
                            "status": job.status,
                            "progress": {"done": job.done, "total": job.total},
                            "error": error,
                        },
                    )
                self._send(404, {"error": {"code": "not_found", "message": "No such resource."}})

            def do_POST(self):  # noqa: N802
                if not self._authorised():
                    return
                form = self._form()
                if self.path == "/api/v1/segment":
                    try:
                        return self._send(200, server.segment(form))
                    except ApiError as exc:
                        return self._send(exc.status, {"error": {"code": exc.code, "message": exc.message}})
                if self.path == "/api/v1/jobs":
                    job = Job(uuid.uuid4().hex, total=max(1, server.behaviour.tiles))
                    server.jobs[job.job_id] = job
                    threading.Thread(target=server._run_job, args=(job, form), daemon=True).start()
                    return self._send(202, {"job_id": job.job_id, "status": "queued"})
                self._send(404, {"error": {"code": "not_found", "message": "No such resource."}})

            def do_DELETE(self):  # noqa: N802
                if not self._authorised():
                    return
                parts = self.path.strip("/").split("/")
                if parts[:3] == ["api", "v1", "jobs"] and len(parts) == 4 and parts[3] in server.jobs:
                    job = server.jobs[parts[3]]
                    job.cancel.set()
                    if job.status in ("queued", "running"):
                        job.status = "cancelled"
                    return self._send(200, {"job_id": job.job_id, "status": "cancelled"})
                self._send(404, {"error": {"code": "not_found", "message": "No such job."}})

        return Handler


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _middle_third(box: list[float], phrase: str, source: str) -> dict:
    xmin, ymin, xmax, ymax = box
    dx, dy = (xmax - xmin) / 3, (ymax - ymin) / 3
    ring = [
        [xmin + dx, ymin + dy],
        [xmax - dx, ymin + dy],
        [xmax - dx, ymax - dy],
        [xmin + dx, ymax - dy],
        [xmin + dx, ymin + dy],
    ]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {
            "phrase": phrase,
            "score": 0.9,
            "area": dx * dy,
            "source": source,
            "model": "stand-in",
            "created": "2026-11-24T05:30:00Z",
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="")
    args, _ = parser.parse_known_args()
    # Like the real service, the token may come from the environment (the plugin's local backend does that).
    server = ContractServer(
        Behaviour(token=args.token or os.environ.get("RS2SAM2_TOKEN", "")), port=args.port
    )
    print(f"stand-in backend on {server.url}", flush=True)
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
