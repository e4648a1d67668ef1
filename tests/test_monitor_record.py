"""A service whose record changes under the same id (a Wan2GP web UI restarted with its MCP server) is checked as
it is now, not as it was found first."""
from __future__ import annotations

from backlot.services.config import load_settings
from backlot.services.control import ControlCenter
from backlot.services.events import ServiceDiscovered, ServiceUpdated
from backlot.services.models import ServiceRecord


def _rec(protocol: str, usable: bool) -> ServiceRecord:
    return ServiceRecord(kind="wan2gp", host="127.0.0.1", port=7860, base_url="http://127.0.0.1:7860",
                         protocol=protocol, usable=usable, details={} if usable else {"webui_only": True})


async def test_the_health_monitor_follows_a_record_that_changed_protocol() -> None:
    center = ControlCenter(load_settings(cli={"scan_default_ports": False}), discover_on_start=False)
    webui, mcp = _rec("gradio-6", False), _rec("mcp", True)
    try:
        center._on_service(ServiceDiscovered(webui))
        monitor = center.monitors[webui.id]
        assert monitor.record.protocol == "gradio-6"
        center._on_service(ServiceUpdated(mcp, ("protocol", "usable")))
        assert center.monitors[webui.id] is monitor and monitor.record is mcp  # its next check is an MCP ping
    finally:
        await center.keeper.cancel_all()
        await center.pool.close()
