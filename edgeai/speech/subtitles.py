"""Transcripts as subtitle files: SubRip (.srt) and WebVTT (.vtt), from segment timestamps."""

from __future__ import annotations

from edgeai.speech.stt import Transcript


def _clock(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def srt(transcript: Transcript) -> str:
    cues = [f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
            for i, s in enumerate((s for s in transcript.segments if s.text.strip()), 1)]
    return "\n".join(cues)


def vtt(transcript: Transcript) -> str:
    cues = [f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n"
            for s in transcript.segments if s.text.strip()]
    return "WEBVTT\n\n" + "\n".join(cues)
