"""The app's tabs, one module per tab. Each has ``TITLE``, ``load()`` (its models: app.py loads them as it starts) and
``build()`` (its Gradio components and events); the work itself is done by ``pipelines/``."""
