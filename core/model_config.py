"""A model's ``config.pbtxt``, parsed with Triton's own protobuf definitions (``tritonclient.grpc.model_config_pb2``);
torch-free, for ``sae validate`` and the in-process benchmark alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as pb


def read_config(path: Path) -> pb.ModelConfig:
    """The ModelConfig of the file at ``path``; text_format.ParseError (naming line and column) when it is not one."""
    return text_format.Parse(Path(path).read_text(), pb.ModelConfig())


def config_dict(config: pb.ModelConfig) -> dict[str, Any]:
    """The same JSON-like dict the server's ``get_model_config(as_json=True)["config"]`` returns."""
    return json_format.MessageToDict(config, preserving_proto_field_name=True)
