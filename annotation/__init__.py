"""The annotation suite: labelling tasks, review and export of human labels."""
