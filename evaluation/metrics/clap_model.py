"""LAION-CLAP (``music_audioset_epoch_15_esc_90.14.pt``) through transformers' ``ClapModel`` (HTSAT + RoBERTa).

``load_clap(path, tokenizer_path)`` accepts either
- a transformers-format CLAP directory (``config.json``, weights, ``preprocessor_config.json`` and the
  tokenizer files), e.g. a local snapshot of ``laion/larger_clap_music`` — the conversion of this
  checkpoint published with transformers' CLAP conversion fix (PR #27153); or
- the original LAION ``.pt`` file, whose keys are renamed by :func:`rename_original_clap_state_dict`
  (our own mapping, following the renames of transformers' ``convert_clap_original_pytorch_to_hf.py``)
  and whose architecture is read off the tensor shapes by :func:`clap_config_from_original` (including the
  text branch's LayerNorm eps, :func:`text_layer_norm_eps`: 1e-5 for LAION's RoBERTa, not transformers'
  default 1e-12, which moves text embeddings by up to ~3e-4). Text
  embeddings then need the RoBERTa tokenizer (``evaluate.clap_tokenizer_path``, a local ``roberta-base``
  tokenizer directory); audio embeddings (FAD) do not.

:class:`ClapEmbedder` embeds audio exactly as fadtk's ``clap-laion-music``: mono at 48 kHz, int16
round-trip, 10 s windows every 1 s (zero-padded at the end), one 512-d L2-normalised embedding each. As in fadtk,
a window starts at every started second of the audio: a 6.5 s file gives 7 windows, never windows of pure padding.
"""

from __future__ import annotations

import logging
import math
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evaluation.metrics.excerpt import SCORED_SECONDS, scored_head
from model.runtime.errors import InputError

log = logging.getLogger(__name__)

ORIGINAL_CHECKPOINT = "music_audioset_epoch_15_esc_90.14.pt"
HF_CONVERSION = "laion/larger_clap_music"
SAMPLE_RATE = 48000
HOW_TO_GET = (
    f"download {ORIGINAL_CHECKPOINT} from https://huggingface.co/lukewys/laion_clap (the checkpoint fadtk's "
    f"clap-laion-music uses) or a snapshot of {HF_CONVERSION} (`huggingface-cli download {HF_CONVERSION} "
    "--local-dir DIR`) and set evaluate.clap_path to the file or directory"
)


class ClapWeightsError(InputError, FileNotFoundError):
    """The CLAP weights are missing or unusable."""


@dataclass(frozen=True)
class ClapBundle:
    """A loaded CLAP: model (eval mode), feature extractor, tokenizer (None: audio only) and where it came from."""

    model: Any
    feature_extractor: Any
    tokenizer: Any
    source: str
    kind: str  # "transformers-dir" or "original-pt"


def _audio_renames(key: str) -> list[str]:
    """Rename one ``audio_branch.*`` key of HTSAT to transformers' names (qkv splits into three)."""
    key = key.replace("audio_branch.", "audio_model.audio_encoder.", 1)
    key = key.replace("audio_model.audio_encoder.bn0.", "audio_model.audio_encoder.batch_norm.")
    for old, new in (
        (".norm1.", ".layernorm_before."),
        (".norm2.", ".layernorm_after."),
        (".mlp.fc1.", ".intermediate.dense."),
        (".mlp.fc2.", ".output.dense."),
        (".attn.proj.", ".attention.output.dense."),
        (".attn.", ".attention.self."),
    ):
        key = key.replace(old, new)
    if ".attention.self.qkv." in key:
        return [key.replace(".qkv.", f".{part}.") for part in ("query", "key", "value")]
    return [key]


_DROPPED_PREFIXES = (
    "audio_branch.spectrogram_extractor.",
    "audio_branch.logmel_extractor.",  # mel is computed by the processor
    "audio_branch.head.",
    "audio_branch.tscam_conv.",  # AudioSet classifier head, unused by the embedding
    "text_transform.",
    "audio_transform.",  # training-time MLPs, not part of the embedding path
)


def rename_original_clap_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original LAION-CLAP keys (optionally ``module.``-prefixed) -> transformers ``ClapModel`` keys."""
    out: dict[str, torch.Tensor] = {}
    for raw_key, value in state_dict.items():
        key = raw_key[len("module.") :] if raw_key.startswith("module.") else raw_key
        if key.startswith(_DROPPED_PREFIXES) or key.endswith((".attn_mask", "embeddings.position_ids")):
            continue
        match = re.match(r"^(text|audio)_projection\.(\d+)\.(weight|bias)$", key)
        if match:
            which, index, kind = match.groups()
            if index not in ("0", "2"):
                raise ClapWeightsError(f"unexpected projection layer in CLAP checkpoint: {raw_key}")
            out[f"{which}_projection.linear{1 if index == '0' else 2}.{kind}"] = value
        elif key.startswith("text_branch."):
            out[key.replace("text_branch.", "text_model.", 1)] = value
        elif key.startswith("audio_branch."):
            names = _audio_renames(key)
            parts = value.chunk(3, dim=0) if len(names) == 3 else (value,)
            out.update({name: part.clone() for name, part in zip(names, parts, strict=True)})
        else:
            out[key] = value
    return out


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


ROBERTA_LAYER_NORM_EPS = 1e-5  # roberta-base's config, which LAION-CLAP's `roberta` text branch is built from
BERT_LAYER_NORM_EPS = 1e-12  # bert-base-uncased's, LAION-CLAP's `bert` text branch


def text_layer_norm_eps(state_dict: dict[str, torch.Tensor]) -> float:
    """LayerNorm eps of an original checkpoint's text branch, told apart by its token-type table (renamed keys).

    RoBERTa has one token type, BERT two; LAION-CLAP builds each from its Hugging Face base config, so the eps
    is that config's: 1e-5 (``roberta-base``) or 1e-12 (``bert-base-uncased``).
    """
    key = "text_model.embeddings.token_type_embeddings.weight"
    if key not in state_dict:
        raise ClapWeightsError(f"not a LAION-CLAP (HTSAT + RoBERTa) checkpoint: missing '{key}'")
    return ROBERTA_LAYER_NORM_EPS if state_dict[key].shape[0] == 1 else BERT_LAYER_NORM_EPS


def clap_config_from_original(state_dict: dict[str, torch.Tensor]) -> Any:
    """Build the ``ClapConfig`` of an original checkpoint from its tensor shapes (renamed or not)."""
    from transformers import ClapConfig

    sd = rename_original_clap_state_dict(state_dict)
    enc = "audio_model.audio_encoder"
    try:
        patch = sd[f"{enc}.patch_embed.proj.weight"]
        n_layers = _count(sd, rf"^{enc}\.layers\.(\d+)\.")
        depths = [_count(sd, rf"^{enc}\.layers\.{i}\.blocks\.(\d+)\.") for i in range(n_layers)]
        tables = [
            sd[f"{enc}.layers.{i}.blocks.0.attention.self.relative_position_bias_table"]
            for i in range(n_layers)
        ]
        fc1 = sd[f"{enc}.layers.0.blocks.0.intermediate.dense.weight"]
        words = sd["text_model.embeddings.word_embeddings.weight"]
        text_hidden = words.shape[1]
        audio_config = {
            "patch_embeds_hidden_size": patch.shape[0],
            "patch_size": patch.shape[2],
            "depths": depths,
            "num_attention_heads": [t.shape[1] for t in tables],
            "window_size": int(round((math.sqrt(tables[0].shape[0]) + 1) / 2)),
            "mlp_ratio": fc1.shape[0] / patch.shape[0],
            "num_mel_bins": sd[f"{enc}.batch_norm.weight"].shape[0],
            "hidden_size": sd["audio_projection.linear1.weight"].shape[1],
            "enable_fusion": any(".fusion_model." in k or "mel_conv2d" in k for k in sd),
        }
        text_config = {
            "vocab_size": words.shape[0],
            "hidden_size": text_hidden,
            "num_hidden_layers": _count(sd, r"^text_model\.encoder\.layer\.(\d+)\."),
            "num_attention_heads": max(1, text_hidden // 64),  # RoBERTa's 64-dim heads
            "intermediate_size": sd["text_model.encoder.layer.0.intermediate.dense.weight"].shape[0],
            "max_position_embeddings": sd["text_model.embeddings.position_embeddings.weight"].shape[0],
            "type_vocab_size": sd["text_model.embeddings.token_type_embeddings.weight"].shape[0],
            "layer_norm_eps": text_layer_norm_eps(sd),
        }
        projection_dim = sd["audio_projection.linear2.weight"].shape[0]
    except KeyError as exc:
        raise ClapWeightsError(f"not a LAION-CLAP (HTSAT + RoBERTa) checkpoint: missing {exc}") from exc
    return ClapConfig(audio_config=audio_config, text_config=text_config, projection_dim=projection_dim)


def _read_original_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # LAION's files pickle a few non-tensor training objects; this is the user's own local file.
        log.warning("%s: not loadable with weights_only=True; loading it as a trusted local pickle", path)
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not state:
        raise ClapWeightsError(f"{path}: no state_dict found in this checkpoint")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def model_from_original(state_dict: dict[str, torch.Tensor], source: str = "state dict") -> Any:
    """A ``ClapModel`` holding an original-format state dict; every model tensor must be provided."""
    from transformers import ClapModel

    config = clap_config_from_original(state_dict)
    model = ClapModel(config)
    renamed = rename_original_clap_state_dict(state_dict)
    result = model.load_state_dict(renamed, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or result.unexpected_keys:
        raise ClapWeightsError(
            f"{source}: key mapping incomplete; missing {missing[:5]} ({len(missing)}), "
            f"unexpected {result.unexpected_keys[:5]} ({len(result.unexpected_keys)})"
        )
    return model.eval()


def original_feature_extractor() -> Any:
    """The HTSAT front end of the LAION music checkpoints: 48 kHz, 64 mel bins 50 Hz-14 kHz, hop 480, 10 s."""
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(
        feature_size=64,
        sampling_rate=SAMPLE_RATE,
        hop_length=480,
        fft_window_size=1024,
        max_length_s=10,
        frequency_min=50,
        frequency_max=14000,
        truncation="rand_trunc",
        padding="repeatpad",
    )


def load_clap(path: str, tokenizer_path: str = "") -> ClapBundle:
    """Load CLAP from ``evaluate.clap_path`` (a transformers dir or the original .pt); see module doc."""
    if not path:
        raise ClapWeightsError(f"params.yaml: evaluate.clap_path is empty; {HOW_TO_GET}")
    p = Path(path)
    if not p.exists():
        raise ClapWeightsError(f"evaluate.clap_path {p} does not exist; {HOW_TO_GET}")
    from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

    if p.is_dir():
        if not (p / "config.json").exists():
            raise ClapWeightsError(f"{p}: no config.json, not a transformers CLAP directory; {HOW_TO_GET}")
        model = ClapModel.from_pretrained(p).eval()
        _warn_on_text_eps(model.config.text_config, p)
        try:
            feature_extractor = ClapFeatureExtractor.from_pretrained(p)
        except OSError:
            log.warning("%s: no feature-extractor config; using the LAION HTSAT front end", p)
            feature_extractor = original_feature_extractor()
        tok_dir = Path(tokenizer_path) if tokenizer_path else p
        tokenizer = AutoTokenizer.from_pretrained(tok_dir) if _has_tokenizer(tok_dir) else None
        kind = "transformers-dir"
    else:
        model = model_from_original(_read_original_checkpoint(p), source=str(p))
        feature_extractor = original_feature_extractor()
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path) if tokenizer_path else None
        kind = "original-pt"
    if tokenizer is None:
        log.warning(
            "CLAP loaded without a tokenizer: audio embeddings only (set evaluate.clap_tokenizer_path)"
        )
    return ClapBundle(
        model=model, feature_extractor=feature_extractor, tokenizer=tokenizer, source=str(p), kind=kind
    )


def _warn_on_text_eps(text_config: Any, source: Path) -> None:
    """A transformers dir's config is used as is; say so when its RoBERTa eps differs from LAION's."""
    eps = float(text_config.layer_norm_eps)
    if int(text_config.type_vocab_size) == 1 and eps != ROBERTA_LAYER_NORM_EPS:
        log.warning(
            "%s/config.json: text_config.layer_norm_eps = %g, LAION-CLAP's RoBERTa uses %g; text "
            "embeddings differ from the original checkpoint's by up to ~3e-4",
            source,
            eps,
            ROBERTA_LAYER_NORM_EPS,
        )


def _has_tokenizer(directory: Path) -> bool:
    return any((directory / f).exists() for f in ("tokenizer.json", "vocab.json", "tokenizer_config.json"))


class ClapEmbedder:
    """fadtk ``clap-laion-music`` windows through transformers ``ClapModel``; also embeds text."""

    sample_rate = SAMPLE_RATE

    def __init__(self, bundle: ClapBundle, batch_size: int = 8, hop_seconds: float = 1.0):
        self.bundle = bundle
        self.batch_size = batch_size
        self.hop_seconds = hop_seconds
        self.dim = int(bundle.model.config.projection_dim)
        self.name = (
            f"clap-laion-music ({Path(bundle.source).name}, {bundle.kind}; via transformers ClapModel)"
        )

    def windows(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """fadtk's windows of the scored first 10 s: (W, 480000) float32, int16-quantised, zero-padded.

        One window starts at every started ``hop_seconds`` of the audio (fadtk's ``range(0, len, hop)``): a 10 s
        clip gives 10 windows at a 1 s hop, a 6.5 s file 7; the file is not padded to 10 s first.
        """
        mono = scored_head(audio, sample_rate, SAMPLE_RATE).mean(axis=0)
        mono = (np.clip(mono, -1.0, 1.0) * 32767.0).astype(np.int16).astype(np.float32) / 32767.0
        size, hop = int(SCORED_SECONDS * SAMPLE_RATE), int(self.hop_seconds * SAMPLE_RATE)
        chunks = [mono[i : i + size] for i in range(0, max(mono.shape[0], 1), hop)]
        return np.stack([np.pad(c, (0, size - c.shape[0])) for c in chunks])

    @torch.no_grad()
    def embed_windows(self, windows: np.ndarray) -> np.ndarray:
        """(W, 480000) at 48 kHz -> (W, E) L2-normalised audio embeddings."""
        fe, model = self.bundle.feature_extractor, self.bundle.model
        fusion = bool(model.config.audio_config.enable_fusion)
        out = []
        for start in range(0, len(windows), self.batch_size):
            batch = list(windows[start : start + self.batch_size])
            inputs = fe(
                batch,
                sampling_rate=SAMPLE_RATE,
                return_tensors="pt",
                truncation="fusion" if fusion else "rand_trunc",
                padding="repeatpad",
            )
            feats = model.get_audio_features(
                input_features=inputs["input_features"], is_longer=inputs.get("is_longer")
            )
            out.append(feats.pooler_output.double().numpy())
        return np.concatenate(out)

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        return self.embed_windows(self.windows(audio, sample_rate))

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> np.ndarray:
        """B texts -> (B, E) L2-normalised text embeddings."""
        tok = self.bundle.tokenizer
        if tok is None:
            raise ClapWeightsError(
                "CLAP text embeddings need a tokenizer: set evaluate.clap_tokenizer_path "
                "to a local roberta-base tokenizer directory (or use a transformers CLAP dir)"
            )
        max_len = min(77, int(self.bundle.model.config.text_config.max_position_embeddings) - 2)
        inputs = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt")
        feats = self.bundle.model.get_text_features(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        )
        return feats.pooler_output.double().numpy()

    def settings(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.bundle.source,
            "kind": self.bundle.kind,
            "sample_rate": SAMPLE_RATE,
            "window_seconds": SCORED_SECONDS,
            "hop_seconds": self.hop_seconds,
            "windows": "one per started hop of the first 10 s, unpadded file (fadtk)",
            "scored_seconds": SCORED_SECONDS,
            "dim": self.dim,
        }
