"""`rs2sam2 models list|rename|delete|export|import`: a person's own models (person_models.py).

  rs2sam2 models list [--json]                 every model this backend can serve, yours included
  rs2sam2 models rename NAME NEW_NAME [--overwrite]
  rs2sam2 models delete NAME
  rs2sam2 models export NAME FILE.zip          one file: the checkpoint and its meta.json
  rs2sam2 models import FILE [--name NAME] [--overwrite]   a zip from `export`, or a .safetensors

With `--json` each action prints one JSON object (the contract's PersonModel, or {"deleted": NAME}):
the plugin's model manager runs these commands. A refused action prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backend.contract import to_wire

ACTIONS = ("list", "rename", "delete", "export", "import")


def add_actions(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="models_action", metavar="ACTION")
    listing = sub.add_parser("list", help="the models this backend can serve and download, yours included")
    listing.add_argument("--json", action="store_true", help="one JSON object (for programs)")
    rename = sub.add_parser("rename", help="rename one of your models")
    rename.add_argument("name")
    rename.add_argument("new_name")
    rename.add_argument("--overwrite", action="store_true", help="replace a model of yours named NEW_NAME")
    delete = sub.add_parser("delete", help="delete one of your models")
    delete.add_argument("name")
    export = sub.add_parser("export", help="write one of your models to one file (.zip)")
    export.add_argument("name")
    export.add_argument("file", type=Path, help="the .zip to write, or a folder")
    imported = sub.add_parser("import", help="add a model from an exported .zip or a .safetensors file")
    imported.add_argument("file", type=Path)
    imported.add_argument("--name", help="the name to give it (default: its own)")
    imported.add_argument("--overwrite", action="store_true", help="replace a model of yours of that name")
    for action in (rename, delete, export, imported):
        action.add_argument("--json", action="store_true", help="one JSON object (for programs)")


def run_action(args: argparse.Namespace) -> int:
    from backend.weights.person_models import ModelStore

    store = ModelStore.default()
    action = args.models_action
    if action == "rename":
        answer = to_wire(store.rename(args.name, args.new_name, overwrite=args.overwrite))
        text = f"renamed {args.name} to {answer['name']}"
    elif action == "delete":
        store.delete(args.name)
        answer, text = {"deleted": args.name}, f"deleted {args.name}"
    elif action == "export":
        path = store.export(args.name, args.file)
        answer, text = {"name": args.name, "file": str(path)}, f"exported {args.name} to {path}"
    else:
        answer = to_wire(store.import_model(args.file, name=args.name, overwrite=args.overwrite))
        text = f"imported {args.file.name} as {answer['name']}"
    print(json.dumps(answer) if args.json else text)
    return 0
