"""The paper's rivals on models small enough to check by hand: RecEraser's partition and attention,
APA's per-sample parameter merge, E2URec's teachers and steps; shard bookkeeping through SISA."""

import copy

import pytest
import torch
from torch import nn

from eraserlib import InstanceRemoval, QueryModification
from eraserlib.adapters import adapter_state, clone_adapter_model
from eraserlib.baselines import (
    SISA,
    AttentionAggregate,
    SampleAdaptiveLoRA,
    balanced_kmeans,
    centred_cosine_weights,
    e2urec,
    fit_aggregator,
    forced_teacher_logits,
    group_assignment,
    group_embeddings,
)
from eraserlib.baselines.e2urec import masked_kl
from eraserlib.toy.tiny_lora import (
    TinyLoraConfig,
    build_model,
    language_model_loss,
    make_sequences,
)
from eraserlib.training import TrainConfig

TINY = TinyLoraConfig(num_examples=24, sequence_length=6)
CONFIG = TrainConfig(epochs=1, lr=1e-2, batch_size=8, seed=0)


def two_clusters(n=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    left = torch.randn(n // 2, 3, generator=generator) * 0.1
    return torch.cat([left - 5, left + 5])


# --- RecEraser's balanced partition --------------------------------------------------------------

def test_balanced_kmeans_separates_clusters_keeps_shards_balanced_and_is_seeded():
    points = two_clusters()
    assignment = balanced_kmeans(points, 2, seed=0)
    assert len(set(assignment[:6])) == 1 and len(set(assignment[6:])) == 1 and assignment[0] != assignment[6]
    assert balanced_kmeans(points, 2, seed=0) == assignment
    # three shards of a two-cluster set: balance wins (⌈12/3⌉ = 4 each), none empty
    three = balanced_kmeans(points, 3, seed=1)
    assert sorted(three.count(s) for s in range(3)) == [4, 4, 4]
    uneven = balanced_kmeans(torch.randn(10, 2, generator=torch.Generator().manual_seed(0)), 4, seed=0)
    assert max(uneven.count(s) for s in range(4)) <= 3 and set(uneven) == set(range(4))
    with pytest.raises(ValueError, match="1 ≤ k ≤ n"):
        balanced_kmeans(points, 13)


def test_groups_share_a_shard_and_their_mean_embedding():
    groups = ["a", "b", "a", "c", "b"]
    embeddings = torch.tensor([[0.0], [2.0], [2.0], [5.0], [4.0]])
    keys, means = group_embeddings(groups, embeddings)
    assert keys == ["a", "b", "c"] and means[:, 0].tolist() == [1.0, 3.0, 5.0]
    assert group_assignment(groups, {"a": 1, "b": 0, "c": 1}) == [1, 0, 1, 1, 0]
    with pytest.raises(ValueError, match="no shard"):
        group_assignment(groups, {"a": 0})


# --- shard bookkeeping (SISA with a given partition, as RecEraser and APA train it) ---------------

def sharded(assignment=None):
    data = make_sequences(TINY)
    template = build_model(TINY)
    ensemble = SISA(lambda: clone_adapter_model(template), language_model_loss, 3, CONFIG, seed=0)
    assignment = assignment or [i % 3 for i in range(len(data))]
    return ensemble.fit(data, assignment), data, assignment


def test_a_request_retrains_exactly_the_shards_that_hold_it():
    ensemble, data, assignment = sharded()
    assert [len(s) for s in ensemble.shards] == [8, 8, 8] and ensemble.train_count == [1, 1, 1]
    before = [adapter_state(m) for m in ensemble.shard_models]
    untouched = ensemble.shard_models[1]
    info = ensemble.unlearn(InstanceRemoval([data[0], data[3]]))  # both in shard 0
    assert info["affected_shards"] == [0] and ensemble.train_count == [2, 1, 1]
    assert len(ensemble.shards[0]) == 6 and ensemble.shard_models[1] is untouched
    for s in (1, 2):
        assert all(torch.equal(before[s][k], v) for k, v in adapter_state(ensemble.shard_models[s]).items())


def test_a_substitution_retrains_only_its_shard_and_leaves_the_others_bit_for_bit():
    """The shards a request does not touch keep their adapters exactly; the touched one is trained again.

    (A request that touches no shard cannot be made: eraserlib refuses a request whose examples are not in
    the training data, and one whose new example equals its old one, ``tests/test_bad_inputs.py``.)
    """
    ensemble, data, _ = sharded()
    before = [adapter_state(m) for m in ensemble.shard_models]
    new = data[2].clone()
    new[-1] = (int(new[-1]) + 1) % TINY.vocab_size
    info = ensemble.unlearn(QueryModification([data[2]], [new]))
    assert info["affected_shards"] == [2] and ensemble.train_count == [1, 1, 2]
    for s in (0, 1):
        assert all(torch.equal(before[s][k], v) for k, v in adapter_state(ensemble.shard_models[s]).items())
    assert not all(torch.equal(before[2][k], v) for k, v in adapter_state(ensemble.shard_models[2]).items())


def test_substitutions_stay_in_the_shard_of_the_old_example():
    ensemble, data, _ = sharded()
    new = data[4].clone()
    new[-1] = (int(new[-1]) + 1) % TINY.vocab_size
    ensemble.unlearn(QueryModification([data[4]], [new]))
    assert any(torch.equal(new, e) for e in ensemble.shards[1]) and not any(torch.equal(data[4], e)
                                                                             for e in ensemble.shards[1])
    with pytest.raises(ValueError, match="assignment"):
        sharded(assignment=[0] * 5)


# --- RecEraser's attention aggregator -----------------------------------------------------------------

def shard_models(k=3):
    template = build_model(TINY)
    models = []
    for s in range(k):
        model = clone_adapter_model(template)
        generator = torch.Generator().manual_seed(10 + s)
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.copy_(0.3 * torch.randn(p.shape, generator=generator))
        models.append(model)
    return models


def test_the_attention_weights_sum_to_one_and_one_shard_is_itself():
    models = shard_models()
    ids = torch.stack(make_sequences(TINY)[:4])
    aggregate = AttentionAggregate(models, attention_size=8, seed=0)
    with torch.no_grad():
        states = torch.stack([m(input_ids=ids, output_hidden_states=True).hidden_states[-1] for m in models])
        alpha = aggregate.attention(states)
    assert alpha.shape == (3, 4, TINY.sequence_length)
    assert torch.allclose(alpha.sum(0), torch.ones(4, TINY.sequence_length)) and (alpha > 0).all()
    single = AttentionAggregate(models[:1], attention_size=8, seed=0)
    with torch.no_grad():
        assert torch.allclose(single(input_ids=ids).logits, models[0](input_ids=ids).logits, atol=1e-5)


def test_the_aggregator_trains_its_attention_only_and_its_cache_continues_a_prompt():
    models = shard_models()
    frozen = [adapter_state(m) for m in models]
    data = make_sequences(TINY)
    aggregate, report = fit_aggregator(models, language_model_loss, data, CONFIG, attention_size=8, seed=0)
    again, _ = fit_aggregator(shard_models(), language_model_loss, data, CONFIG, attention_size=8, seed=0)
    assert report["steps"] == 3 and torch.equal(aggregate.query, again.query)  # seeded
    assert {n for n, p in aggregate.named_parameters() if p.requires_grad} == {"query", "project.weight",
                                                                               "project.bias"}
    for model, state in zip(models, frozen):
        assert all(torch.equal(state[k], v) for k, v in
                   {n: p for n, p in model.named_parameters() if n in state}.items())
    ids = torch.stack(data[:2])
    with torch.no_grad():
        full = aggregate(input_ids=ids).logits[:, -1]
        first = aggregate(input_ids=ids[:, :-1], use_cache=True, logits_to_keep=1)
        step = aggregate(input_ids=ids[:, -1:], cache=first.cache, use_cache=True).logits[:, -1]
    assert torch.allclose(full, step, atol=1e-5)


# --- APA's per-sample merged adapter -----------------------------------------------------------------

def merged_reference(models, weights, ids):
    """Sample b through a copy of the base whose adapted weights are W₀ + Σᵢ wᵢ sᵢ BᵢAᵢ (dense merge)."""
    rows = []
    for b in range(ids.shape[0]):
        model = copy.deepcopy(models[0])
        with torch.no_grad():
            for name, layer in model.named_modules():
                if not hasattr(layer, "lora_A") or "default" not in getattr(layer, "lora_A", {}):
                    continue
                shards = [dict(m.named_modules())[name] for m in models]
                delta = sum(w * s.scaling["default"] * s.lora_B["default"].weight @ s.lora_A["default"].weight
                            for w, s in zip(weights[b].tolist(), shards))
                layer.base_layer.weight.add_(delta)
                layer.lora_B["default"].weight.zero_()
            rows.append(model(input_ids=ids[b:b + 1]).logits[0])
    return torch.stack(rows)


def test_apa_answers_each_sample_with_its_own_merged_adapter():
    models = shard_models()
    data = make_sequences(TINY)[:4]
    weights = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0.2, 0.5, 0.3], [1 / 3, 1 / 3, 1 / 3]])
    table = {id(e): w for e, w in zip(data, weights)}
    apa = SampleAdaptiveLoRA(models, lambda examples: torch.stack([table[id(e)] for e in examples]))
    ids = torch.stack(data)
    apa.condition(data)
    with torch.no_grad():
        logits = apa(input_ids=ids).logits
        assert torch.allclose(logits[0], models[0](input_ids=ids[:1]).logits[0], atol=1e-5)
        assert torch.allclose(logits[1], models[2](input_ids=ids[1:2]).logits[0], atol=1e-5)
        assert torch.allclose(logits, merged_reference(models, weights, ids), atol=1e-5)
        # a batch repeated per candidate repeats each sample's weights
        repeated = apa(input_ids=ids.repeat_interleave(2, 0)).logits
    assert torch.allclose(repeated[::2], logits, atol=1e-6)
    assert not any(p.requires_grad for p in apa.parameters())


def test_apa_needs_its_samples_and_its_weights_sum_to_one():
    models = shard_models(2)
    apa = SampleAdaptiveLoRA(models, lambda examples: torch.full((len(examples), 3), 1 / 3))
    with pytest.raises(RuntimeError, match="condition"):
        apa(input_ids=torch.stack(make_sequences(TINY)[:1]))
    with pytest.raises(ValueError, match="adapters"):
        apa.condition(make_sequences(TINY)[:2])
    embeddings = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    centroids = embeddings[:3]
    w = centred_cosine_weights(embeddings, centroids, embeddings.mean(0), temperature=0.1)
    assert torch.allclose(w.sum(1), torch.ones(5)) and (w.argmax(1)[:3] == torch.arange(3)).all()
    flat = centred_cosine_weights(embeddings, centroids, embeddings.mean(0), temperature=1e6)
    assert torch.allclose(flat, torch.full((5, 3), 1 / 3), atol=1e-4)


# --- E2URec ----------------------------------------------------------------------------------------

class Classifier(nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.linear = nn.Linear(4, 3)

    def forward(self, x):
        return self.linear(x)


def logits_fn(model, batch):
    x, _ = batch
    return model(x)[:, None], torch.ones(len(x), 1)


def ce_loss(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def collate(examples):
    return torch.stack([x for x, _ in examples]), torch.tensor([y for _, y in examples])


def toy_data(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, generator=generator), int(torch.randint(3, (1,), generator=generator)))
            for _ in range(n)]


def test_the_forgetting_teacher_lowers_what_the_augmented_model_raised():
    original, augmented = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([3.0, 1.0, 0.0])
    assert forced_teacher_logits(original, augmented, alpha=2.0).tolist() == [-3.0, 2.0, 0.0]
    z = torch.randn(2, 5, 7)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    assert masked_kl(z, z, mask).abs() < 1e-6
    other = z.clone()
    other[:, 2:, 0] += 5  # other distributions at the masked-out positions only
    assert masked_kl(z, other, mask).abs() < 1e-6 and masked_kl(z, other, torch.ones(2, 5)) > 0.1
    assert masked_kl(z, z + 1, torch.ones(2, 5)).abs() < 1e-6  # logits, not probabilities


def run_e2urec(seed=0, **kwargs):
    original, augmented, student = Classifier(0), Classifier(1), Classifier(0)
    for p in (*original.parameters(), *augmented.parameters()):
        p.requires_grad_(False)
    forget, retain = toy_data(10, 1), toy_data(30, 2)
    report = e2urec(student, original, augmented, ce_loss, logits_fn, forget, retain, batch_size=4, seed=seed,
                    collate_fn=collate, **kwargs)
    return student, report, original


def test_e2urec_steps_determinism_and_that_only_the_student_moves():
    student, report, original = run_e2urec(epochs=2, forget_epochs=1)
    assert report["steps"] == 3 * 3  # (1 + 2) epochs of ⌈10 / 4⌉ forget batches
    assert report["retain_kl"][:3] == [0.0, 0.0, 0.0] and all(v > 0 for v in report["retain_kl"][3:])
    again, second, _ = run_e2urec(epochs=2, forget_epochs=1)
    assert report["losses"] == second["losses"] and torch.equal(student.linear.weight, again.linear.weight)
    assert not torch.equal(student.linear.weight, original.linear.weight)
    assert torch.equal(original.linear.weight, Classifier(0).linear.weight)  # the teacher is untouched
    # w = 1 and no forget-only epoch: the student stays the original (its KL and CE gradients only)
    _, kept, _ = run_e2urec(epochs=1, forget_epochs=0, weight=1.0, lr=0.0)
    assert kept["retain_kl"][0] == pytest.approx(0.0, abs=1e-7)


def test_e2urec_pairs_the_new_versions_with_the_old_and_refuses_bad_input():
    forget = toy_data(4, 1)
    with pytest.raises(ValueError, match="pair"):
        e2urec(Classifier(0), Classifier(0), Classifier(1), ce_loss, logits_fn, forget, toy_data(8, 2),
               learn=forget[:3], collate_fn=collate)
    with pytest.raises(ValueError, match="weight"):
        e2urec(Classifier(0), Classifier(0), Classifier(1), ce_loss, logits_fn, forget, toy_data(8, 2),
               weight=1.5, collate_fn=collate)
    _, report, _ = run_e2urec(epochs=1, forget_epochs=0, learn=[(x, (y + 1) % 3) for x, y in toy_data(10, 1)])
    assert report["steps"] == 3
