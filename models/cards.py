"""Hugging Face model cards (README.md beside config.json) for the project's models.

Each model class writes its card with ``model_card(metadata)``, which fills :func:`render` with its own
text; ``save_pretrained`` saves it. What a card says about the data comes from the training metadata
(sources, clips or tracks, what was held out), the licence of each source from :data:`SOURCE_LICENCES`
(summarised from ``$AVSTUDIO_MEDIA/MANIFEST.tsv``), and the evaluation from ``metadata["evaluation"]``:
figures that a benchmark measured on these very weights, each with the results file and key it comes
from. Freshly trained weights have none until they are measured.

    python -m models.cards    # refresh the evaluation figures and cards of the bundled models

re-reads the figures named by each model module's ``CARD_EVALUATION`` from ``benchmarks/results`` and
re-saves each bundled folder (same tensors, new README.md and config.json).
"""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
CODE_LICENCE = "MIT"
WEIGHTS_TERMS = "for research and demo use"

# Licence of each data source, from ../shared/media/MANIFEST.tsv (column "license"). Keys: a clip's or
# track's source prefix (the file name up to the first "_"), or a full name where one source mixes terms.
SOURCE_LICENCES = {
    # talking-face video
    "lrs2": "LRS2 (BBC): research-only terms (clips from the deep_avsr repository, code MIT)",
    "pcavs": "PC-AVS repository, CC BY 4.0; the footage appears to be VoxCeleb2-style YouTube video, provenance not stated",
    "edtalk": "EDTalk test data: no licence file in the repository, provenance not stated",
    "styletalk": "StyleTalk repository, MIT; HDTF-style clips with their side-car audio, provenance of the footage not stated",
    "liveportrait": "LivePortrait repository, MIT; media provenance not stated (the audio may be music)",
    "dreamtalk": "MEAD dataset clips from the DreamTalk repository (repository MIT; MEAD terms: research use)",
    "MEAD": "MEAD dataset clips from the DreamTalk repository (repository MIT; MEAD terms: research use)",
    # emotion-labelled speech and music (MANIFEST_emotion_midi.tsv)
    "emodb": "EmoDB (Burkhardt et al. 2005): research use",
    "pop909": "POP909 (Wang et al. 2020), MIDI of 909 pop songs: MIT",
    "panda4q": "PANDA 4Q (Panda et al. 2018), commercial 30 s previews: research use",
    "emotify": "Emotify (Aljanaki et al. 2016), music from Magnatune: CC BY-NC-SA; research use",
    # music
    "audiocraft": "audiocraft repository (code MIT); licence of the recordings not stated",
    "etr": "GPL-2+ (Extreme Tux Racer, Debian)",
    "frozenbubble": "GPL-2 (Frozen-Bubble, Debian)",
    "lincity": "GPL-2+ (LinCity-NG, Debian)",
    "warzone2100": "GPL-2+ (Warzone 2100, Debian)",
    "wesnoth": "GPL-2+ (Battle for Wesnoth, Debian)",
    "mirdata": "excerpts of the Ballroom, CUIDADO, Hainsworth and SIMAC datasets: research use (mirdata test resources, BSD-3-Clause)",
    "smstools": "CC BY 4.0 (freesound.org, via MTG sms-tools)",
    "spleeter": "spleeter repository (code MIT); provenance of the song excerpt not stated",
    "librosa_147793__setuniman__sweet-waltz-0i-22mi": "CC BY-NC 3.0 (librosa/data)",
    "librosa_442789__lena-orsa__happy-music-pistachio-ice-cream-ragtime": "CC BY-NC 3.0 (librosa/data)",
    "librosa_Hungarian_Dance_number_5_-_Allegro_in_F_sharp_minor_string_o": "public domain (librosa/data)",
    "librosa_Karissa_Hobbs_-_Lets_Go_Fishin": "CC BY 3.0 (librosa/data)",
    "librosa_admiralbob77_-_Choice_-_Drum-bass": "CC BY-NC 3.0/4.0 (ccMixter, via librosa/data)",
    "librosa_sorohanro_-_solo-trumpet-06": "CC BY 3.0 (librosa/data)",
}


def licence_of(name: str) -> str:
    """The licence of a source, clip or track name (see :data:`SOURCE_LICENCES`)."""
    if name in SOURCE_LICENCES:
        return SOURCE_LICENCES[name]
    return SOURCE_LICENCES.get(name.split("_")[0], "not recorded in MANIFEST.tsv")


def licence_lines(names) -> list[str]:
    """Markdown bullets: each licence with the names under it (sources, clips or tracks), in first-seen order."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(licence_of(name), []).append(name)
    return [f"- {lic}: {', '.join(f'`{n}`' for n in sorted(ns))}" for lic, ns in groups.items()]


def read_figure(spec: dict, results: Path = RESULTS) -> dict:
    """A figure named by ``spec`` ({"measure", "results": file under benchmarks/results, "key": dotted path,
    optional "target"}) with its value read from that file."""
    value = json.loads((results / spec["results"]).read_text())
    for part in spec["key"].split("."):
        value = value[part]
    return {**spec, "value": value, "results": f"benchmarks/results/{spec['results']}"}


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v)
    return str(v)


def evaluation_lines(metadata: dict, how: str) -> list[str]:
    figures = metadata.get("evaluation") or []
    if not figures:
        return [f"No benchmark figures are recorded with these weights; measure them with {how}."]
    lines = [f"Measured on these weights with {how}; each figure is the value under *key* in *file*.", "",
             "| measure | value | target | file | key |", "|---|---|---|---|---|"]
    for f in figures:
        lines.append(f"| {f['measure']} | {_value(f['value'])} | {f.get('target', '')} | `{f['results']}` | `{f['key']}` |")
    return lines


def render(*, title: str, summary: str, tags: list[str], pipeline_tag: str, intended_use: str, usage: str,
           architecture: str, training: list[str], metadata: dict, evaluate_with: str, limitations: str,
           data_names: list[str]) -> str:
    """The README.md of one model folder: YAML front matter (licence, library, tags, task) and the sections
    intended use, how to use, architecture, training data, evaluation, limitations, licence."""
    from huggingface_hub import ModelCardData

    front = ModelCardData(license="other", license_name="research-and-demo-use", library_name="pytorch",
                          tags=tags, pipeline_tag=pipeline_tag).to_yaml()
    parts = [f"---\n{front}\n---", f"# {title}", summary.strip(),
             "## Intended use", intended_use.strip(),
             "## How to use", usage.strip(),
             "## Architecture", architecture.strip(),
             "## Training data", "\n".join(training),
             "## Evaluation", "\n".join(evaluation_lines(metadata, evaluate_with)),
             "## Limitations", limitations.strip(),
             "## Licence",
             "\n".join([f"- **Code**: {CODE_LICENCE} (the `LICENSE` file of the AV Studio repository).",
                        (f"- **Weights**: {WEIGHTS_TERMS}. They were fitted on the data below, some of it under "
                         "research-only terms or of unstated provenance, so no wider licence can be granted."),
                        "- **Data** (from the media collection's `MANIFEST.tsv`; the files are not in this folder):",
                        *("  " + line for line in licence_lines(data_names))])]
    return "\n\n".join(parts) + "\n"


def bundled_models() -> list:
    """(model class, bundled folder, figures for its card) of the bundled models."""
    from models import audio_encoder, bgm_fit, face_controls, lipsync, soundtrack, syncnet

    return [(syncnet.SyncNet, syncnet.DEFAULT_WEIGHTS, syncnet.CARD_EVALUATION),
            (syncnet.SyncNet, syncnet.JUDGE_DEFAULT_WEIGHTS, syncnet.JUDGE_CARD_EVALUATION),
            (lipsync.LipSyncNet, lipsync.DEFAULT_WEIGHTS, lipsync.CARD_EVALUATION),
            (audio_encoder.AudioAutoencoder, audio_encoder.DEFAULT_WEIGHTS, audio_encoder.CARD_EVALUATION),
            (face_controls.ExpressionControls, face_controls.DEFAULT_WEIGHTS, face_controls.CARD_EVALUATION),
            (bgm_fit.BGMFitNet, bgm_fit.DEFAULT_WEIGHTS, bgm_fit.CARD_EVALUATION),
            (soundtrack.SoundtrackGenerator, soundtrack.DEFAULT_WEIGHTS, soundtrack.CARD_EVALUATION)]


def refresh_bundled(results: Path = RESULTS) -> None:
    """Re-read each bundled model's card figures and re-save it in place (card included)."""
    for cls, folder, specs in bundled_models():
        model = cls.from_pretrained(folder)
        meta = {**model.training_metadata, "evaluation": [read_figure(s, results) for s in specs]}
        model.save_pretrained(folder, metadata=meta)
        print(f"{folder}: {len(specs)} figures, README.md written")


if __name__ == "__main__":
    refresh_bundled()
