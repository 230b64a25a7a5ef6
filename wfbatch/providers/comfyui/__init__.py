"""ComfyUI, self-hosted (providers.md §7): `client` talks to one or several servers, `graph` fills
the workflow per job."""

from wfbatch.providers.comfyui.client import ComfyUIProvider
from wfbatch.providers.comfyui.graph import GraphError

__all__ = ["ComfyUIProvider", "GraphError"]
