"""The backend API for Payment Manager (the SDK's `BACKEND_ENDPOINT`, 3003): inbound transfers.

Errors are the spec's `{statusCode, message}`, with an FSPIOP code in `statusCode` (see `errors`).
"""

from api.backend.errors import BackendError, install_backend_error_handlers
from api.backend.routes import router
from api.backend.service import InboundService

__all__ = ["BackendError", "InboundService", "install_backend_error_handlers", "router"]
