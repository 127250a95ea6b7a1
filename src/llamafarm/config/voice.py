"""LlamaFarm's `voice` block (speech in, speech out over a WebSocket).

This server has no voice chat: the block is validated, so a file with a typo still fails,
kept as written, and reported as not supported (`ProjectConfig.UNSUPPORTED`). The keys and
their bounds are those of LlamaFarm 0.0.27's `config-schema.yaml`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VoiceProfile(_Block):
    audio_path: str
    description: str | None = None


class TextToSpeech(_Block):
    model: str = "kokoro"
    voice: str = "af_heart"
    speed: float = Field(default=0.95, ge=0.5, le=2.0)
    keep_loaded: bool = False
    voice_profiles: dict[str, VoiceProfile] = Field(default_factory=dict)
    temperature: float = Field(default=0.8, ge=0.1, le=2.0)
    top_k: int = Field(default=1000, ge=1, le=5000)
    top_p: float = Field(default=0.95, ge=0.0, le=1.0)
    repetition_penalty: float = Field(default=1.2, ge=1.0, le=2.0)


class SpeechToText(_Block):
    model: Literal["tiny", "base", "small", "medium", "large-v3", "distil-large-v3-turbo"] = "base"
    language: str = "en"
    keep_loaded: bool = False


class TurnDetection(_Block):
    enabled: bool = True
    base_silence_duration: float = Field(default=0.4, ge=0.1, le=2.0)
    thinking_silence_duration: float = Field(default=1.2, ge=0.3, le=5.0)
    max_silence_duration: float = Field(default=2.5, ge=0.5, le=10.0)


class Emotion(_Block):
    enabled: bool = True
    model: str = "wav2vec2-lg-xlsr-en"
    confidence_threshold: float = Field(default=0.4, ge=0.0, le=1.0)


class Voice(_Block):
    enabled: bool = True
    llm_model: str | None = None
    tts: TextToSpeech | None = None
    stt: SpeechToText | None = None
    enable_thinking: bool = False
    turn_detection: TurnDetection | None = None
    emotion: Emotion | None = None
