"""The annotation suite: two labelling tasks (Pair: a video and its matching track; BGM fit: how well music
fits speech), a label store that loses nothing, review of the labels and their export as Hugging Face
datasets.

``load_labels(dir_or_hub_id, task)`` is what the trainers read: a ``datasets.DatasetDict`` with a ``labels``
split (one row per label) and an ``items`` split (aggregated per item), written by
``python -m annotation export``.
"""
__all__ = ["load_labels"]


def __getattr__(name: str):
    if name == "load_labels":  # imported on first use: `datasets` takes a while to import
        from annotation.export import load_labels

        return load_labels
    raise AttributeError(f"module 'annotation' has no attribute {name!r}")
