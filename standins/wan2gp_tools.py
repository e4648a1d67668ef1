"""The Wan2GP stand-in's MCP tools: the real server's 22 tool names and input schemas, over the stand-in's state."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from mcp.server.fastmcp import FastMCP

from backlot.standins.wan2gp_gallery import Gallery, Transfers
from backlot.standins.wan2gp_jobs import Job, JobRunner
from backlot.standins.wan2gp_models import DEEPY_TEMPLATES, Catalogue

LIST_MODELS_MAX = 10  # the real wangp_list_models never returns more than 10 records


@dataclass
class WanGPState:
    """Everything the tools and HTTP routes share."""

    catalogue: Catalogue
    gallery: Gallery
    transfers: Transfers
    runner: JobRunner


async def wait_for_job(job: Job, timeout_s: float | None) -> None:
    """Wait without blocking the event loop until the job is done; TimeoutError after timeout_s."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def wake() -> None:  # runs on the worker thread
        try:
            loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))
        except RuntimeError:  # the loop already closed during shutdown
            pass

    job.on_done(wake)
    try:
        await asyncio.wait_for(done, timeout_s)
    except TimeoutError:
        raise TimeoutError(f"WanGP job {job.job_id} did not finish within {timeout_s} s") from None


def _page(items: list[Any], limit: int, offset: int, cap: int) -> list[Any]:
    offset = max(0, int(offset))
    return items[offset:offset + max(1, min(int(limit), cap))]


def _strip_open_objects(schema: Any) -> None:
    """Remove every "additionalProperties": true (in place): JSON Schema's default, so the meaning is unchanged."""
    if isinstance(schema, dict):
        if schema.get("additionalProperties") is True:
            del schema["additionalProperties"]
        for value in schema.values():
            _strip_open_objects(value)
    elif isinstance(schema, list):
        for value in schema:
            _strip_open_objects(value)


def match_reference_schemas(mcp: FastMCP) -> None:
    """Make tools/list byte-identical to the real server's.

    Current pydantic writes "additionalProperties": true for every dict[str, Any]; the pydantic that Wan2GP's
    mcp 1.10.1 ran with did not. FastMCP 1.x has no public accessor for registered tools, hence _tool_manager.
    """
    for tool in mcp._tool_manager.list_tools():
        _strip_open_objects(tool.parameters)
        _strip_open_objects(tool.output_schema)


SETTINGS_DOC = """# WanGP settings (stand-in summary)

Pass a settings dict to `wangp_generate`: `model_type` (required), `prompt`, `negative_prompt`,
`resolution` ("832x480"), `video_length` (frames, or seconds as "5s" at `force_fps` or the model's fps),
`num_inference_steps`, `guidance_scale`, `seed` (-1 = random), `force_fps`, `batch_size`, and for audio
models `duration_seconds`. Start from `wangp_get_default_settings(model_type)`.
"""


def register_docs(mcp: FastMCP) -> None:
    """The agent prompt and a settings document, as the real server offers (it has 21 documents)."""

    @mcp.prompt(name="wangp_agent", title="WanGP Agent Guide",
                description="How to discover models, build settings, run jobs and fetch media.")
    def wangp_agent_prompt() -> str:
        """The agent guide."""
        return ("Find a model with wangp_list_models or wangp_search_models, start from wangp_get_default_settings, "
                "submit with wangp_generate, poll wangp_get_job until done, then fetch each result.gallery_items "
                "entry with wangp_create_gallery_download and a GET of its download_url on this server.")

    @mcp.resource("wangp://docs/settings", name="settings", title="Settings",
                  description="WanGP generation settings.", mime_type="text/markdown")
    def read_settings_documentation() -> str:
        """The settings document."""
        return SETTINGS_DOC


def register_tools(mcp: FastMCP, state: WanGPState) -> None:
    """Register every tool, in the real server's order, with its exact parameter names and defaults."""
    cat, gallery, transfers, runner = state.catalogue, state.gallery, state.transfers, state.runner

    def filters(**kw: str | None) -> dict[str, str | None]:
        return kw

    @mcp.tool()
    def wangp_list_models(family: str | None = None, base_model_type: str | None = None, finetune: str | None = None,
                          model_type: str | None = None, main_output: str | None = None, inputs: str | None = None,
                          name: str | None = None, query: str | None = None, limit: int = 10, offset: int = 0,
                          include_availability: bool = False) -> list[dict[str, Any]]:
        """List up to 10 model records; filters take case-insensitive * and ? globs, query searches names and ids."""
        models = cat.select(query=query, **filters(family=family, base_model_type=base_model_type, finetune=finetune,
                                                   model_type=model_type, main_output=main_output, inputs=inputs,
                                                   name=name))
        return cat.records(_page(models, limit, offset, LIST_MODELS_MAX), include_availability)

    @mcp.tool()
    def wangp_search_models(query: str, family: str | None = None, base_model_type: str | None = None,
                            finetune: str | None = None, main_output: str | None = None, inputs: str | None = None,
                            limit: int = 10, offset: int = 0, include_availability: bool = False) -> dict[str, Any]:
        """Search models by name, id, family or description; returns one page plus totals."""
        if not str(query or "").strip():
            raise ValueError("query is required")
        models = cat.select(query=query, **filters(family=family, base_model_type=base_model_type, finetune=finetune,
                                                   main_output=main_output, inputs=inputs))
        page = cat.records(_page(models, limit, offset, 50), include_availability)
        offset = max(0, int(offset))
        return {"matches": page, "total_matches": len(models), "returned": len(page), "offset": offset,
                "has_more": offset + len(page) < len(models)}

    @mcp.tool()
    def wangp_list_model_defs(family: str | None = None, base_model_type: str | None = None, finetune: str | None = None,
                              model_type: str | None = None, main_output: str | None = None, inputs: str | None = None,
                              name: str | None = None, query: str | None = None, limit: int = 10,
                              offset: int = 0) -> list[dict[str, Any]]:
        """List a page of full model definitions (filters as in wangp_list_models)."""
        models = cat.select(query=query, **filters(family=family, base_model_type=base_model_type, finetune=finetune,
                                                   model_type=model_type, main_output=main_output, inputs=inputs,
                                                   name=name))
        return [cat.definition(m.model_type) or {} for m in _page(models, limit, offset, 20)]

    @mcp.tool()
    def wangp_get_model(model_type: str) -> dict[str, Any] | None:
        """One model's full definition, or null for an unknown model_type."""
        return cat.definition(model_type)

    @mcp.tool()
    def wangp_get_model_metadata(model_type: str, include_availability: bool = False) -> dict[str, Any] | None:
        """One compact model record, or null for an unknown model_type."""
        model = cat.get(model_type)
        return cat.records([model], include_availability)[0] if model else None

    @mcp.tool()
    def wangp_get_model_availability(model_type: str) -> dict[str, Any]:
        """Whether a model's files are present locally (status missing or available)."""
        return cat.availability(model_type)

    @mcp.tool()
    def wangp_list_model_availability(family: str | None = None, base_model_type: str | None = None,
                                      finetune: str | None = None, model_type: str | None = None,
                                      main_output: str | None = None, inputs: str | None = None, name: str | None = None,
                                      query: str | None = None, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """Availability records for a page of models selected like wangp_list_models."""
        models = cat.select(query=query, **filters(family=family, base_model_type=base_model_type, finetune=finetune,
                                                   model_type=model_type, main_output=main_output, inputs=inputs,
                                                   name=name))
        return [cat.availability(m.model_type) for m in _page(models, limit, offset, 50)]

    @mcp.tool()
    def wangp_get_default_settings(model_type: str) -> dict[str, Any]:
        """A model's pristine generation defaults, ready to edit and pass to wangp_generate."""
        return cat.default_settings(model_type)

    @mcp.tool()
    def wangp_list_loras(model_type: str) -> dict[str, Any]:
        """LoRAs installed for a model (the stand-in has none)."""
        if cat.get(model_type) is None:
            raise KeyError(f"Unknown model_type: {model_type}")
        return {"model_type": model_type, "loras": [], "total": 0}

    @mcp.tool()
    def wangp_get_model_schema(model_type: str) -> dict[str, Any] | None:
        """A compact capability and settings summary of one model, or null for an unknown model_type."""
        return cat.schema(model_type)

    @mcp.tool()
    def wangp_list_gallery(media_type: str = "all", limit: int = 50) -> list[dict[str, Any]]:
        """Gallery media (generated and uploaded), oldest first, with resolution, frames, fps and duration."""
        return gallery.list(media_type, limit)

    @mcp.tool()
    def wangp_get_gallery_item(gallery_id: str) -> dict[str, Any]:
        """One gallery item with the settings that produced it."""
        return gallery.full(gallery_id)

    @mcp.tool()
    def wangp_get_gallery_selection(media_type: str = "all") -> list[dict[str, Any]]:
        """The gallery items currently selected (the newest of each gallery)."""
        return gallery.selection(media_type)

    @mcp.tool()
    def wangp_create_gallery_upload(filename: str) -> dict[str, Any]:
        """Reserve a one-use PUT URL on this server for adding a media file to the gallery."""
        return transfers.create_upload(filename)

    @mcp.tool()
    def wangp_create_gallery_download(gallery_id: str) -> dict[str, Any]:
        """Make a one-use GET URL on this server for a gallery item's file, valid for 10 minutes."""
        return transfers.create_download(gallery_id)

    @mcp.tool()
    def wangp_list_deepy_templates(tool_id: str | None = None) -> list[dict[str, Any]]:
        """Generation templates of WanGP's assistant, per tool id."""
        if tool_id is not None and tool_id not in DEEPY_TEMPLATES:
            raise ValueError(f"tool_id must be one of: {', '.join(DEEPY_TEMPLATES)}")
        out = []
        for tid, (label, templates) in DEEPY_TEMPLATES.items():
            if tool_id in (None, tid):
                entries = [{"template": t, "label": getattr(cat.get(m), "name", t), "default": i == 0}
                           for i, (t, m) in enumerate(templates)]
                out.append({"tool_id": tid, "label": label, "default_template": templates[0][0], "templates": entries})
        return out

    @mcp.tool()
    def wangp_get_deepy_template_settings(tool_id: str, template: str) -> dict[str, Any]:
        """The generation settings of one assistant template ('default' picks the tool's default)."""
        if tool_id not in DEEPY_TEMPLATES:
            raise ValueError(f"tool_id must be one of: {', '.join(DEEPY_TEMPLATES)}")
        templates = DEEPY_TEMPLATES[tool_id][1]
        wanted = templates[0][0] if template.strip().casefold() == "default" else template.strip()
        for name, model_type in templates:
            if name.casefold() == wanted.casefold():
                return {"tool_id": tool_id, "template": name, "settings": cat.default_settings(model_type)}
        raise ValueError(f"Unknown Deepy template '{template}' for tool '{tool_id}'.")

    @mcp.tool()
    def wangp_postprocess(path: str, process: str | None = None, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Post-processing (upscaling, interpolation...): none is installed in the stand-in; omit process to list."""
        if not process:
            return {"status": "discovery", "processes": [], "count": 0}
        raise ValueError(f"Unknown post-processing process: {process}")

    @mcp.tool()
    def wangp_toolbox(action: str | None = None, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        """Media utilities; omit action to discover them. The stand-in offers get_media_details {gallery_id}."""
        actions = [{"name": "get_media_details", "description": "Resolution, frames, fps, duration of a gallery item."}]
        if not action:
            return {"status": "discovery", "actions": actions, "count": len(actions),
                    "next": "Call again with one action and omit arguments to get its schema."}
        if action != "get_media_details":
            raise ValueError(f"Unknown toolbox action '{action}'. Call without action to discover available actions.")
        if arguments is None:
            return {"status": "schema", "action": {**actions[0], "parameters": {
                "type": "object", "properties": {"gallery_id": {"type": "string"}}, "required": ["gallery_id"]}}}
        return {"status": "done", **gallery.full(str(arguments.get("gallery_id", "")))}

    @mcp.tool()
    async def wangp_generate(source: dict[str, Any] | list[dict[str, Any]], wait: bool = False,
                             timeout_s: float | None = None, event_limit: int | None = None) -> dict[str, Any]:
        """Queue a generation (settings dict, task dict or task list); returns the job, failures are reported in it."""
        job = runner.submit(source)
        if wait:
            await wait_for_job(job, timeout_s)
        return job.snapshot(gallery, event_limit)

    @mcp.tool()
    def wangp_get_job(job_id: str, event_limit: int | None = None) -> dict[str, Any]:
        """Poll a job: done flag, recent events (event_limit, default 20) and, once done, the result."""
        return runner.get(job_id).snapshot(gallery, event_limit)

    @mcp.tool()
    def wangp_cancel_job(job_id: str, event_limit: int | None = None) -> dict[str, Any]:
        """Ask a job to stop; a running job ends at its next step with result.cancelled true."""
        return runner.cancel(job_id).snapshot(gallery, event_limit)
