"""eraserlib.losses: the causal-LM loss against Hugging Face's own, and the collator."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from eraserlib.losses import CausalLMCollator, OutputLoss, causal_lm_loss


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, attn_implementation="eager")
    return LlamaForCausalLM(config).eval()


def test_matches_hugging_face_on_unpadded_batches(model):
    ids = torch.randint(0, 32, (3, 9), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :4] = -100  # a prompt of four tokens, the same length in every example
    batch = {"input_ids": ids, "labels": labels}
    with torch.no_grad():
        ours = causal_lm_loss(model, batch)
        theirs = model(input_ids=ids, labels=labels).loss
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_is_a_per_example_mean_and_padding_changes_nothing(model):
    collate = CausalLMCollator(pad_token_id=5)
    short = {"input_ids": [1, 2, 3, 4]}
    long = {"input_ids": [7, 8, 9, 10, 11, 12, 13], "labels": [-100, -100, 9, 10, 11, 12, 13]}
    with torch.no_grad():
        alone = [float(causal_lm_loss(model, collate([e]))) for e in (short, long)]
        together = float(causal_lm_loss(model, collate([short, long])))
    assert together == pytest.approx(sum(alone) / 2, rel=1e-5)


def test_the_split_recomposes_the_loss(model):
    batch = CausalLMCollator()([{"input_ids": [1, 2, 3, 4, 5]}, {"input_ids": [3, 2, 1]}])
    assert isinstance(causal_lm_loss, OutputLoss)
    with torch.no_grad():
        logits = causal_lm_loss.outputs(model, batch)
        assert logits.shape == (2, 5, 32)
        assert torch.equal(causal_lm_loss.loss_of_outputs(logits, batch), causal_lm_loss(model, batch))


def test_clear_errors(model):
    with pytest.raises(TypeError, match="input_ids"):
        causal_lm_loss(model, torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="predict no token"):
        causal_lm_loss(model, {"input_ids": torch.tensor([[1, 2]]), "labels": torch.tensor([[1, -100]])})
    with pytest.raises(ValueError, match="differ in length"):
        CausalLMCollator()([{"input_ids": [1, 2], "labels": [1]}])
