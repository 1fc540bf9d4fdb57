"""The clinic terminal's web UI (README.md): `web_ui.create_app(test_config=None)`.

`create_app` is imported on first use, so `clinic` commands that do not serve the UI do
not pay for importing Flask.
"""


def __getattr__(name: str):
    if name == "create_app":
        from web_ui.app import create_app

        return create_app
    raise AttributeError(f"module 'web_ui' has no attribute {name!r}")
