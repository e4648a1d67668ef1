"""The application service: the one front door every face (socket API, window, command line) uses.

``service.ApplicationService`` holds the use cases of a running core (the composition root builds it);
``local`` holds the few a command runs without an instance (discover once, read the history read-only,
import a workflow). Both return the typed views of ``views``, whose ``to_dict`` is the one wire form.
A front imports from here, never ``services.backends``, ``services.jobs`` or ``services.connectivity``.
"""
