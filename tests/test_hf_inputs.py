"""Inputs of Hugging Face models from their forward signature and config (estimator.hf_inputs),
the --inputs file, and the CLI around them. Expected shapes come from each config's own fields."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import transformers as T
from torch import nn

from estimator.errors import CaptureError
from estimator.hf_inputs import infer_inputs, load_input_spec
from estimator.model_source import hf_model


def _shapes(config, cls_name, **sizes) -> dict:
    _, inputs, _ = hf_model(config, cls_name, **sizes)
    return {k: tuple(v.shape) for k, v in inputs.items()}


def test_token_models_get_ids_at_seq_or_the_position_limit():
    config = T.BertConfig(num_hidden_layers=1)
    assert _shapes(config, "BertModel", batch=3, seq=40) == {"input_ids": (3, 40)}
    assert _shapes(config, "BertModel") == {"input_ids": (1, min(512, config.max_position_embeddings))}
    with pytest.raises(CaptureError, match="exceeds the model's 512 positions"):
        hf_model(config, "BertModel", seq=513)


def test_image_video_audio_and_paired_inputs_follow_the_config():
    vit = T.ViTConfig(num_hidden_layers=1, image_size=96)
    assert _shapes(vit, "ViTModel", batch=2) == {"pixel_values": (2, vit.num_channels, 96, 96)}
    assert _shapes(vit, "ViTModel", image=64) == {"pixel_values": (1, 3, 64, 64)}
    video = T.VideoMAEConfig(num_hidden_layers=1)
    assert _shapes(video, "VideoMAEModel") == {"pixel_values": (1, video.num_frames, 3, video.image_size,
                                                                video.image_size)}
    wav = T.Wav2Vec2Config(num_hidden_layers=1)
    assert _shapes(wav, "Wav2Vec2Model") == {"input_values": (1, 16000)}
    assert _shapes(wav, "Wav2Vec2Model", seq=8000) == {"input_values": (1, 8000)}
    ast = T.ASTConfig(num_hidden_layers=1)
    assert _shapes(ast, "ASTModel") == {"input_values": (1, ast.max_length, ast.num_mel_bins)}
    whisper = T.WhisperConfig(encoder_layers=1, decoder_layers=1)
    assert _shapes(whisper, "WhisperForConditionalGeneration") == {
        "input_features": (1, whisper.num_mel_bins, 2 * whisper.max_source_positions),
        "decoder_input_ids": (1, min(512, whisper.max_target_positions))}
    s2t = T.Speech2TextConfig(encoder_layers=1, decoder_layers=1)
    shapes = _shapes(s2t, "Speech2TextForConditionalGeneration", seq=300)
    assert shapes["input_features"] == (1, 300, s2t.input_feat_per_channel * s2t.input_channels)
    clip = T.CLIPConfig()
    assert _shapes(clip, "CLIPModel", batch=2) == {
        "input_ids": (2, clip.text_config.max_position_embeddings),
        "pixel_values": (2, 3, clip.vision_config.image_size, clip.vision_config.image_size)}
    t5 = T.T5Config(num_layers=1, num_decoder_layers=1)
    assert _shapes(t5, "T5ForConditionalGeneration", seq=32) == {"input_ids": (1, 32), "decoder_input_ids": (1, 32)}


def test_inputs_file_adds_and_replaces_by_name(tmp_path):
    spec = tmp_path / "inputs.json"
    spec.write_text(json.dumps({"input_ids": [2, 16], "attention_mask": {"shape": [2, 16]},
                                "pixel_values": {"shape": [2, 3, 32, 32], "dtype": "bfloat16"}}))
    given = load_input_spec(str(spec))
    assert given["input_ids"].dtype == given["attention_mask"].dtype == torch.int64
    assert given["pixel_values"].dtype == torch.bfloat16 and tuple(given["pixel_values"].shape) == (2, 3, 32, 32)
    _, inputs, _ = hf_model(T.BertConfig(num_hidden_layers=1), "BertModel", given={"input_ids": given["input_ids"]})
    assert {k: tuple(v.shape) for k, v in inputs.items()} == {"input_ids": (2, 16)}


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    ("[1, 2]", "JSON object of input name"),
    ("{}", "JSON object of input name"),
    ('{"input_ids": [0, 4]}', "'input_ids' needs a shape of positive integers"),
    ('{"input_ids": "1x4"}', "'input_ids' needs a shape of positive integers"),
    ('{"input_ids": [1.5, 4]}', "'input_ids' needs a shape of positive integers"),
    ('{"input_ids": [true, 4]}', "'input_ids' needs a shape of positive integers"),
    ('{"x": {"shape": [1, 4], "dtype": "float64x"}}', "dtype 'float64x'"),
])
def test_bad_inputs_files_name_the_problem(tmp_path, content, message):
    spec = tmp_path / "inputs.json"
    spec.write_text(content)
    with pytest.raises(CaptureError, match=message):
        load_input_spec(str(spec))


def test_missing_inputs_file_and_uninferable_inputs_are_clear(tmp_path):
    with pytest.raises(CaptureError, match="does not exist"):
        load_input_spec(str(tmp_path / "none.json"))

    class Odd(nn.Module):
        def forward(self, coordinates, radius=None):
            return coordinates

    with pytest.raises(CaptureError, match=r"'coordinates'.*--inputs FILE.json"):
        infer_inputs(Odd(), T.BertConfig(), batch=1)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "estimator.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_cli_hf_config_with_inputs_file(tmp_path):
    T.WhisperConfig(encoder_layers=1, decoder_layers=1, architectures=["WhisperForConditionalGeneration"]) \
        .save_pretrained(tmp_path / "whisper")
    (tmp_path / "in.json").write_text(json.dumps({"decoder_input_ids": [1, 8]}))
    done = _cli("estimate", "--hf-config", str(tmp_path / "whisper"), "--inputs", str(tmp_path / "in.json"),
                "--json", "-", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["model"] == "whisper:WhisperForConditionalGeneration" and data["complete"] is True
    assert data["totals"]["forward_flops"] > 0
    wrong = _cli("estimate", "resnet18", "--inputs", str(tmp_path / "in.json"), cwd=tmp_path)
    assert wrong.returncode != 0 and "--inputs sets the input shapes of an --hf-config model" in wrong.stderr
    assert "Traceback" not in wrong.stderr
