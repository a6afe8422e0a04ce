"""`faceprint serve`: the REST API (/api/v1) and the browser app on one FastAPI process.

Only the CLI imports this package (``faceprint.service.app.create_app``); it calls the library and
re-implements no stage or policy.
"""
