"""The two labelling tasks: what the annotator is told, and the label scale each one uses."""
from __future__ import annotations

RATING_ANCHORS = {
    1: "clashes with the speech: wrong mood or it fights the voice",
    2: "poor fit: you would swap it",
    3: "acceptable: it does no harm",
    4: "good fit: it supports the speech",
    5: "made for it: mood, pace and level all fit",
}

DEFAULT_INSTRUCTIONS = {
    "pair": (
        "Watch the video (it plays muted) and listen to it with each candidate track: keys 1 to N switch the "
        "track without stopping the video, so you compare them on the same moment. Pick the track that fits "
        "the video best: its mood, energy and rhythm with what you see and with the cuts. If none of them "
        "fits, choose none fits (key 0). You may first hum a melody you would want for this video (Record "
        "hum); retake it as often as you like. Enter submits, S skips with a reason, U undoes your last "
        "label, Space plays or pauses."
    ),
    "bgm": (
        "You hear a speech segment with a music track under it, mixed at matched loudness with the music "
        "lowered while the voice speaks. Play the mix (the rating unlocks after it has played for a while); "
        "you may play the speech or the music alone. Rate how well the music fits the speech, from 1 to 5:\n"
        + "\n".join(f"{k} = {v}" for k, v in RATING_ANCHORS.items())
        + "\nOptionally tag why: mood, tempo, too busy, too loud, genre. Enter submits, S skips with a reason, "
          "U undoes your last label, Space plays or pauses."
    ),
}
