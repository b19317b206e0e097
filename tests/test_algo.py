"""PQN's algorithm pieces against hand-worked numbers, naive re-implementations, numpy and the physics."""

import copy
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pqn_torch.algo import (
    PQN,
    Actor,
    CriticEnsemble,
    LinearSchedule,
    PQNConfig,
    RewardNormalizer,
    RunningMeanStd,
    actor_loss,
    cpu_fast_path,
    cpu_gradients,
    critic_loss,
    flat_params,
    huber,
    q_lambda_targets,
)
from pqn_torch.algo.faster_of_two import FasterOfTwo
from pqn_torch.algo.flat_params import flatten_parameters
from pqn_torch.algo.flat_radam import ClippedRAdam
from pqn_torch.algo.losses import preactivation_penalty, preactivation_penalty_gradient
from pqn_torch.envs import make_env

# ----------------------------------------------------------------------------- Q(lambda)
REWARDS = torch.tensor([[1.0], [2.0], [3.0]])
VALUES = torch.tensor([[10.0], [20.0], [30.0]])
LAST = torch.tensor([40.0])
NONE = torch.zeros(3, 1, dtype=torch.bool)
AT_1 = torch.tensor([[False], [True], [False]])


def targets(terminated=NONE, truncated=NONE, bootstrap=False, truncation_values=None):
    return q_lambda_targets(
        REWARDS,
        VALUES,
        terminated,
        truncated,
        LAST,
        gamma=0.5,
        q_lambda=0.5,
        bootstrap_truncation=bootstrap,
        truncation_values=truncation_values,
    )[:, 0].tolist()


def test_q_lambda_hand_worked_example():
    # G2 = 3 + .5*40 = 23; G1 = 2 + .5*(30 + .5*(23-30)) = 15.25; G0 = 1 + .5*(20 + .5*(15.25-20)) = 9.8125
    assert targets() == [9.8125, 15.25, 23.0]
    # termination at t=1: G1 = r1 = 2; G0 = 1 + .5*(20 + .5*(2-20)) = 6.5
    assert targets(terminated=AT_1) == [6.5, 2.0, 23.0]


def test_q_lambda_truncation_with_and_without_bootstrapping():
    truncation_values = torch.full((3, 1), 100.0)
    assert targets(truncated=AT_1) == [6.5, 2.0, 23.0]  # reference: a truncation is a termination
    # bootstrapped: G1 = 2 + .5*100 = 52; G0 = 1 + .5*(20 + .5*(52-20)) = 19
    assert targets(truncated=AT_1, bootstrap=True, truncation_values=truncation_values) == [19.0, 52.0, 23.0]
    last_truncated = torch.tensor([[False], [False], [True]])
    assert targets(truncated=last_truncated, bootstrap=True, truncation_values=truncation_values)[2] == 53.0
    with pytest.raises(ValueError, match="truncation_values"):
        targets(truncated=AT_1, bootstrap=True)


def forward_view_lambda_returns(
    rewards, values, terminated, truncated, last_value, gamma, lam, bootstrap, truncation_values
):
    """Naive forward view: G^lambda = (1-lam) sum_n lam^(n-1) G^(n), truncated at the episode's end."""
    steps, envs = rewards.shape
    next_values = np.concatenate([values[1:], last_value[None]])
    out = np.zeros_like(rewards)
    for env in range(envs):
        for start in range(steps):
            n_step_returns = []
            discounted = 0.0
            for offset, step in enumerate(range(start, steps)):
                discounted += gamma**offset * rewards[step, env]
                ends = terminated[step, env] or truncated[step, env]
                if terminated[step, env] or (truncated[step, env] and not bootstrap):
                    n_step_returns.append(discounted)
                elif truncated[step, env]:
                    n_step_returns.append(discounted + gamma ** (offset + 1) * truncation_values[step, env])
                else:
                    n_step_returns.append(discounted + gamma ** (offset + 1) * next_values[step, env])
                if ends:
                    break
            horizon = len(n_step_returns)
            weights = [(1 - lam) * lam**n for n in range(horizon - 1)] + [lam ** (horizon - 1)]
            out[start, env] = sum(w * g for w, g in zip(weights, n_step_returns, strict=True))
    return out


@pytest.mark.parametrize("bootstrap", [False, True])
def test_q_lambda_matches_the_forward_view_on_random_data(bootstrap):
    rng = np.random.default_rng(0)
    steps, envs = 12, 5
    rewards, values, truncation_values = (rng.normal(size=(steps, envs)) for _ in range(3))
    last_value = rng.normal(size=envs)
    ends = rng.random((steps, envs)) < 0.2
    terminated = ends & (rng.random((steps, envs)) < 0.5)
    truncated = ends & ~terminated
    expected = forward_view_lambda_returns(
        rewards, values, terminated, truncated, last_value, 0.9, 0.7, bootstrap, truncation_values
    )
    as_torch = [torch.from_numpy(x) for x in (rewards, values, terminated, truncated, last_value)]
    got = q_lambda_targets(
        *as_torch,
        gamma=0.9,
        q_lambda=0.7,
        bootstrap_truncation=bootstrap,
        truncation_values=torch.from_numpy(truncation_values),
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- losses
def test_huber_values():
    error = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    expected = torch.tensor([2.5, 0.5, 0.125, 0.0, 0.125, 0.5, 1.5])  # 0.5 x^2 inside |x| < 1, |x| - 0.5 outside
    torch.testing.assert_close(huber(error, torch.zeros(7)), expected)
    # delta scales it like smooth L1 with beta=delta: 0.5 x^2 / delta inside, |x| - 0.5 delta outside
    expected = F.smooth_l1_loss(error, torch.zeros(7), reduction="none", beta=2.0)
    torch.testing.assert_close(huber(error, torch.zeros(7), delta=2.0), expected)


def test_critic_loss_sums_the_members_mean_huber():
    q_values = torch.tensor([[0.0, 2.0], [1.0, 1.0]])  # two critics, two samples
    target = torch.tensor([0.5, 0.0])
    # critic 0: mean(0.125, 1.5) = 0.8125; critic 1: mean(0.125, 0.5) = 0.3125
    assert critic_loss(q_values, target).item() == pytest.approx(1.125)


def test_actor_penalty_is_gated_by_the_threshold():
    scale, bias = torch.tensor([2.0, 2.0]), torch.zeros(2)
    rollout = torch.zeros(2, 2)
    action = torch.tensor([[0.2, 0.2], [0.4, 0.4]])  # changes in range units: 0.1 and 0.2
    q_values = torch.tensor([1.0, 3.0])
    loss, fraction = actor_loss(q_values, action, rollout, scale, bias, threshold=0.15, penalty_coeff=10.0)
    # sample 0 under the threshold: -1; sample 1 over it: -3 + 10 * mean(0.5*0.4^2, 0.5*0.4^2) = -3 + 0.8
    assert loss.item() == pytest.approx((-1.0 + -2.2) / 2)
    assert fraction.item() == 0.5
    loss, fraction = actor_loss(q_values, action, rollout, scale, bias, threshold=0.5, penalty_coeff=10.0)
    assert loss.item() == pytest.approx(-2.0) and fraction.item() == 0.0


def test_preactivation_penalty_and_its_gradient_by_hand():
    pre_activation = torch.tensor([[1.0, -2.0], [0.0, 3.0]])
    # 0.1 * mean(1, 4, 0, 9) = 0.35; d/dh = 2 * 0.1 * h / 4 = 0.05 h
    assert preactivation_penalty(pre_activation, 0.1).item() == pytest.approx(0.35)
    torch.testing.assert_close(preactivation_penalty_gradient(pre_activation, 0.1), 0.05 * pre_activation)
    actor = Actor(3, -torch.ones(2), torch.ones(2), hidden_sizes=(8,))
    obs = torch.randn(4, 3)
    torch.testing.assert_close(actor.squash(actor.pre_activation(obs)), actor(obs))
    torch.testing.assert_close(torch.atanh(actor(obs)), actor.pre_activation(obs), atol=1e-5, rtol=1e-4)


# ----------------------------------------------------------------------------- schedules
def test_linear_schedule_endpoints_and_midpoint():
    schedule = LinearSchedule(1.0, 0.15, 100)
    assert [schedule(0), schedule(50), schedule(100), schedule(1000)] == pytest.approx([1.0, 0.575, 0.15, 0.15])
    values = schedule(torch.tensor([0, 50, 100, 1000]))
    torch.testing.assert_close(values, torch.tensor([1.0, 0.575, 0.15, 0.15]))
    assert LinearSchedule(3e-4, 1e-5, 0)(10**6) == 3e-4  # no annealing


# ----------------------------------------------------------------------------- normalizers
def test_running_mean_std_matches_numpy_over_the_stream():
    rng = np.random.default_rng(1)
    batches = [rng.normal(loc=3.0, scale=[1.0, 5.0], size=(n, 2)) for n in (7, 1, 30, 12)]
    stats = RunningMeanStd((2,))
    for batch in batches:
        stats.update(torch.from_numpy(batch).float())
    data = np.concatenate([b.astype(np.float32).astype(np.float64) for b in batches])
    prior = 1e-4  # the initial (mean 0, var 1) pseudo-count
    total = prior + len(data)
    mean = data.sum(0) / total
    var = (prior * 1.0 + ((data - mean) ** 2).sum(0) + prior * mean**2) / total
    np.testing.assert_allclose(stats.mean.numpy(), mean, rtol=1e-10)
    np.testing.assert_allclose(stats.var.numpy(), var, rtol=1e-10)
    x = torch.tensor([[3.0, -2.0]])
    expected = (x.double() - torch.from_numpy(mean)) / np.sqrt(var + 1e-8)
    torch.testing.assert_close(stats.normalize(x), expected.float())


@pytest.mark.parametrize("blow_up", ["at once", "x10 per step"])
def test_running_mean_std_is_immune_to_one_world_blowing_up(blow_up):
    """One of 64 worlds goes to 1e9 (about to pass MuJoCo's limit), at once or x10 per step: no flattened feature."""
    rng = np.random.default_rng(3)
    batches = [torch.from_numpy(rng.normal(loc=[0.0, 5.0], scale=[1.0, 2.0], size=(64, 2))) for _ in range(200)]
    hit_batches = [batch.clone() for batch in batches]
    for step in range(10):
        hit_batches[100 + step][7, 0] = 1e9 if blow_up == "at once" else 10.0**step
    clean, hit = RunningMeanStd((2,)), RunningMeanStd((2,))
    for batch, hit_batch in zip(batches, hit_batches, strict=True):
        clean.update(batch)
        hit.update(hit_batch)
    # The plain merge: var ~ 10 * (1e9)^2 / 12800 ~ 8e14 for feature 0. Here, 1e9 never enters; of the x10 steps
    # 1, 10 and 100 are within 100 spreads of the batch and count as data: + ~1e4 / 12800 ~ 0.8 on a var of 1.
    ratio = hit.var.numpy() / clean.var.numpy()
    assert ratio[1] == pytest.approx(1.0, rel=1e-12)
    assert ratio[0] == pytest.approx(1.0, rel=0.01) if blow_up == "at once" else 1.5 < ratio[0] < 2.0
    np.testing.assert_allclose(hit.mean.numpy(), clean.mean.numpy(), atol=0.01)


def test_running_mean_std_merges_a_change_most_rows_share():
    stats = RunningMeanStd((1,))
    stats.update(torch.zeros(8, 1))
    moved = torch.full((8, 1), 1e6)
    moved[0] = 0.0  # the one row that stayed is the outlier of this batch now; it counts as the batch median
    stats.update(moved)
    assert stats.mean.item() == pytest.approx(1e6 * 8 / (16 + 1e-4))


def test_reward_normalizer_divides_by_the_std_of_discounted_returns():
    rng = np.random.default_rng(2)
    gamma, envs = 0.9, 3
    normalizer = RewardNormalizer(envs, gamma)
    returns, seen = np.zeros(envs), []
    for _ in range(20):
        reward = rng.normal(size=envs).astype(np.float32)
        done = rng.random(envs) < 0.2
        got = normalizer(torch.from_numpy(reward), torch.from_numpy(done))
        returns = np.where(done, 0.0, gamma * returns) + reward
        seen.append(returns.copy())
        data = np.concatenate(seen)
        total = 1e-4 + len(data)
        mean = data.sum() / total
        var = (1e-4 + ((data - mean) ** 2).sum() + 1e-4 * mean**2) / total
        np.testing.assert_allclose(got.numpy(), reward / np.sqrt(var + 1e-8), rtol=1e-5)


# ----------------------------------------------------------------------------- networks
@pytest.mark.parametrize("fast_path", [False, True])
def test_critic_ensemble_equals_its_members_evaluated_one_by_one(fast_path, monkeypatch):
    torch.manual_seed(0)
    width = cpu_fast_path.MIN_WIDTH
    critic = CriticEnsemble(obs_dim=5, action_dim=2, hidden_sizes=(width,) * 2, num_critics=3)
    with torch.no_grad():  # LayerNorm affines other than the initial identity, so that any mix-up shows
        for parameter in (*critic.norm_scales, *critic.norm_shifts):
            parameter.uniform_(0.5, 1.5)
    obs, action = torch.randn(width, 5), torch.randn(width, 2)
    calls = []
    onednn = cpu_fast_path._LINEAR
    if onednn is not None:
        monkeypatch.setattr(cpu_fast_path, "_LINEAR", lambda *args: calls.append(1) or onednn(*args))
    with torch.no_grad(), cpu_fast_path.enabled(fast_path):  # as in the agent's phases
        got = critic(obs, action)
    assert len(calls) == (3 if fast_path and cpu_fast_path.AVAILABLE else 0)  # each critic's 64 x 64 layer
    assert got.shape == (3, width)
    for member in range(3):
        hidden = torch.cat([obs, action], -1)
        for layer in range(2):
            hidden = F.linear(hidden, critic.weights[layer][member].T, critic.biases[layer][member])
            hidden = F.layer_norm(
                hidden,
                (hidden.shape[-1],),
                critic.norm_scales[layer][member],
                critic.norm_shifts[layer][member],
                eps=1e-6,
            ).relu()
        expected = F.linear(hidden, critic.weights[2][member].T, critic.biases[2][member])[:, 0]
        torch.testing.assert_close(got[member], expected)
    assert not torch.allclose(got[0], got[1])  # independently initialized members
    torch.testing.assert_close(critic.mean_q(obs, action), got.mean(0))


def test_clip_and_step_is_clip_grad_norm_then_radam_and_keeps_radams_state():
    """The CPU update's fused step against torch's: clipped and unclipped gradients, RAdam's first
    (unrectified) steps and its rectified ones, the clipped gradient left in .grad, and a state_dict that
    torch's RAdam loads to go on alike."""
    torch.manual_seed(0)
    fused_flat = torch.randn(3000, requires_grad=True)
    plain_flat = fused_flat.detach().clone().requires_grad_(True)
    initial = plain_flat.detach().clone()
    fused = ClippedRAdam(fused_flat, torch.tensor(1e-2))
    plain = torch.optim.RAdam([plain_flat], lr=torch.tensor(1e-2), foreach=True)
    for step in range(12):  # RAdam rectifies from its 6th step on
        gradient = torch.randn(3000) * (10.0 if step % 2 else 1e-3)  # norms ~550 (clipped) and ~0.05 (not)
        fused_flat.grad, plain_flat.grad = gradient.clone(), gradient.clone()
        norm = fused.clip_and_step(max_norm=1.0)
        expected_norm = torch.nn.utils.clip_grad_norm_([plain_flat], 1.0)
        plain.step()
        torch.testing.assert_close(norm, expected_norm)
        torch.testing.assert_close(fused_flat.grad, plain_flat.grad)
        torch.testing.assert_close(fused_flat, plain_flat, rtol=1e-6, atol=1e-7)
    assert (fused_flat - initial).abs().min() > 0  # every entry moved
    state = copy.deepcopy(fused.state_dict())  # a state_dict's tensors are the live ones
    assert set(state["state"][0]) == set(plain.state_dict()["state"][0]) and float(state["state"][0]["step"]) == 12
    resumed_flat = fused_flat.detach().clone().requires_grad_(True)
    resumed = torch.optim.RAdam([resumed_flat], lr=torch.tensor(1e-2), foreach=True)
    resumed.load_state_dict(state)
    gradient = torch.randn(3000) * 1e-3
    fused_flat.grad, resumed_flat.grad = gradient.clone(), gradient.clone()
    fused.clip_and_step(max_norm=1.0)
    resumed.step()
    torch.testing.assert_close(fused_flat, resumed_flat, rtol=1e-6, atol=1e-7)


@pytest.mark.skipif(not cpu_fast_path.AVAILABLE, reason="this torch has no oneDNN linear op")
@pytest.mark.parametrize("bias", [True, False])
def test_fast_path_linear_equals_a_float64_matmul_and_leaves_autograd_to_torch(bias, monkeypatch):
    """oneDNN computes x @ W.T + b for W [out, in] in either memory layout; whatever needs a gradient stays torch's."""
    torch.manual_seed(0)
    calls = []
    onednn = cpu_fast_path._LINEAR
    monkeypatch.setattr(cpu_fast_path, "_LINEAR", lambda *args: calls.append(1) or onednn(*args))
    x = torch.randn(cpu_fast_path.MIN_WIDTH, 70)
    weight = torch.randn(cpu_fast_path.MIN_WIDTH + 3, 70)
    b = torch.randn(cpu_fast_path.MIN_WIDTH + 3) if bias else None
    expected = x.double() @ weight.double().T + (b.double() if b is not None else 0.0)
    for layout in (weight, weight.T.contiguous().T):  # [out, in], and a transposed view of [in, out]
        with cpu_fast_path.enabled():
            got = cpu_fast_path.linear(x, layout, b)
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)
    assert len(calls) == 2  # really oneDNN
    leaf = weight.clone().requires_grad_()
    with cpu_fast_path.enabled():
        differentiable = cpu_fast_path.linear(x, leaf, b)
        narrow = cpu_fast_path.linear(x[:, :5], weight[:, :5], b)  # the input layer's width: torch's matmul
        few_rows = cpu_fast_path.linear(x[:3], weight, b)
    assert len(calls) == 2 and differentiable.grad_fn is not None
    torch.testing.assert_close(differentiable.detach().double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(few_rows.double(), expected[:3], rtol=1e-5, atol=1e-5)
    assert narrow.shape == (cpu_fast_path.MIN_WIDTH, cpu_fast_path.MIN_WIDTH + 3)


@pytest.mark.parametrize("preactivation_coeff", [0.0, 0.5])
@pytest.mark.parametrize("width", [8, cpu_fast_path.MIN_WIDTH])  # torch's matmuls; oneDNN's where available
def test_hand_written_gradients_equal_autograd(width, preactivation_coeff):
    """cpu_gradients.minibatch_gradients: both losses and both networks' gradients, as autograd computes them."""
    torch.manual_seed(0)
    batch_size, obs_dim, low, high = cpu_fast_path.MIN_WIDTH, 5, torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 2.0])
    actor = Actor(obs_dim, low, high, hidden_sizes=(width, width))
    critic = CriticEnsemble(obs_dim + 1, 2, hidden_sizes=(width, width), num_critics=3)
    with torch.no_grad():  # LayerNorm affines and biases away from their initial values, so that any mix-up shows
        for parameter in (*actor.parameters(), *critic.parameters()):
            parameter.add_(0.1 * torch.randn_like(parameter))
    actor_flat, critic_flat = flatten_parameters(actor), flatten_parameters(critic)
    obs, critic_obs = torch.randn(batch_size, obs_dim), torch.randn(batch_size, obs_dim + 1)
    action = low + (high - low) * torch.rand(batch_size, 2)
    with torch.no_grad():  # the rollout's deterministic actions: near the actor's, some beyond the penalty's threshold
        rollout_action = actor(obs) + 0.1 * (high - low) * torch.randn(batch_size, 2)
    batch = cpu_gradients.Batch(obs, critic_obs, action, rollout_action, torch.randn(batch_size))

    pre_activation = actor.pre_activation(obs)
    new_action = actor.squash(pre_activation)
    expected_actor_loss, expected_fraction = actor_loss(
        critic.mean_q(critic_obs, new_action),
        new_action,
        batch.rollout_action,
        actor.action_scale,
        actor.action_bias,
        0.15,
        10.0,
    )
    expected_actor_loss = expected_actor_loss + preactivation_coeff * pre_activation.square().mean()
    expected_actor_loss.backward(inputs=list(actor.parameters()))
    q_values = critic(critic_obs, action)
    expected_critic_loss = critic_loss(q_values, batch.target)
    expected_critic_loss.backward(inputs=list(critic.parameters()))
    assert 0.1 < expected_fraction < 0.9  # the penalty is active for some samples, not all

    layouts = (flat_params.layout(actor), flat_params.layout(critic))
    parameters = cpu_gradients.network_views(actor, critic, actor_flat.detach(), critic_flat.detach(), layouts)
    with cpu_fast_path.enabled():
        losses, gradients = cpu_gradients.minibatch_gradients(
            actor, critic, parameters, batch, 0.15, 10.0, preactivation_coeff
        )
    actor_gradient, critic_gradient = torch.zeros_like(actor_flat), torch.zeros_like(critic_flat)
    views = cpu_gradients.network_views(actor, critic, actor_gradient, critic_gradient, layouts)
    torch._foreach_copy_(cpu_gradients.tensors(views), gradients)  # as the agent writes them
    torch.testing.assert_close(losses.actor_loss, expected_actor_loss.detach())
    torch.testing.assert_close(losses.penalty_fraction, expected_fraction)
    torch.testing.assert_close(losses.critic_loss, expected_critic_loss.detach())
    torch.testing.assert_close(losses.q_values, q_values.detach())
    torch.testing.assert_close(actor_gradient, actor_flat.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(critic_gradient, critic_flat.grad, rtol=1e-4, atol=1e-6)
    assert actor_gradient.abs().min() < actor_gradient.abs().max() / 10  # not a constant: real gradients

    # The agent's TorchScript halves: the same bits as the Python ones, on one thread and on two
    halves = cpu_gradients.scripted_halves()
    assert (halves is not None) == cpu_fast_path.AVAILABLE
    if halves is not None:
        second_thread = ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(torch.get_num_threads(),))
        with second_thread, cpu_fast_path.enabled():
            for thread in (None, second_thread):
                got = cpu_gradients.minibatch_gradients(
                    actor, critic, parameters, batch, 0.15, 10.0, preactivation_coeff, thread, halves
                )
                pairs = zip([*losses, *gradients], [*got[0], *got[1]], strict=True)
                assert all(torch.equal(python, scripted) for python, scripted in pairs)


@pytest.mark.skipif(not cpu_fast_path.AVAILABLE, reason="without oneDNN the halves are never scripted")
def test_the_update_keeps_the_python_halves_where_torchscript_fails(monkeypatch):
    def no_torchscript(function):
        raise RuntimeError("TorchScript is gone\nsecond line")

    monkeypatch.setattr(torch.jit, "script", no_torchscript)
    with pytest.warns(UserWarning, match=r"run in Python \(RuntimeError: TorchScript is gone\)$"):
        assert cpu_gradients.scripted_halves() is None


def test_orthogonal_init_and_actor_range():
    torch.manual_seed(0)
    critic = CriticEnsemble(obs_dim=10, action_dim=6, hidden_sizes=(16,), num_critics=2, init_scale=2.0)
    square = critic.weights[0][1]  # [16, 16]
    torch.testing.assert_close(square.T @ square, 4.0 * torch.eye(16), atol=1e-5, rtol=0)
    assert torch.count_nonzero(critic.biases[0]) == 0
    actor = Actor(3, torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 4.0]), hidden_sizes=(8,))
    obs = torch.randn(256, 3)
    actions = actor(obs)
    assert (actions[:, 0].abs() <= 1).all() and (actions[:, 1] >= 0).all() and (actions[:, 1] <= 4).all()
    with torch.no_grad():
        actor.body[-1].bias.copy_(torch.tensor([-50.0, 50.0]))  # drive tanh into saturation: low / high end
    torch.testing.assert_close(actor(obs), torch.tensor([-1.0, 4.0]).expand(256, 2))


def test_actor_output_gain_starts_the_policy_at_the_middle_of_the_range():
    """A small last-layer gain scales only that layer's orthogonal rows, so the first actions sit near the bias."""
    torch.manual_seed(0)
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 4.0])
    actor = Actor(5, low, high, hidden_sizes=(16, 8), init_scale=1.0, output_init_scale=0.01)
    hidden, last = actor.body[0].weight, actor.body[-1].weight  # [16, 5] (columns orthonormal), [2, 8] (rows)
    torch.testing.assert_close(hidden.T @ hidden, torch.eye(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(last @ last.T, 1e-4 * torch.eye(2), atol=1e-9, rtol=0)
    # |pre-tanh| <= 0.01 * |h| and LayerNorm + ReLU bounds |h| by sqrt(8): |tanh(x) * scale| <= 0.01 * sqrt(8) * scale
    actions = actor(torch.randn(512, 5) * 10)
    assert ((actions - torch.tensor([0.0, 2.0])).abs() <= 0.01 * 8**0.5 * torch.tensor([1.0, 2.0])).all()
    default = Actor(5, low, high, hidden_sizes=(16, 8), init_scale=0.5)  # without it: the hidden layers' gain
    last = default.body[-1].weight
    torch.testing.assert_close(last @ last.T, 0.25 * torch.eye(2), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_envs": 0}, "alg.num_envs must be a positive integer"),
        ({"gamma": 1.5}, r"alg.gamma must be a finite number in \[0.0, 1.0\]"),
        ({"num_minibatches": 7}, "must divide num_envs"),
        ({"actor_hidden_sizes": [64, -1]}, "alg.actor_hidden_sizes must be a list of positive integers"),
        ({"bootstrap_truncation": "yes"}, "alg.bootstrap_truncation must be true or false"),
    ],
)
def test_invalid_config_values_fail_with_one_clear_line(change, message):
    with pytest.raises(ValueError, match=message):
        PQNConfig(**change)


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match=r"unknown alg option\(s\) \['gama'\]"):
        PQNConfig.from_dict({"gama": 0.9})


# ----------------------------------------------------------------------------- the agent on a real env
SMALL = dict(
    num_envs=4,
    num_steps=6,
    num_epochs=2,
    num_minibatches=2,
    actor_hidden_sizes=(16,),
    critic_hidden_sizes=(16,),
    num_critics=2,
)


class Recorder:
    """Wraps an env and keeps every step's result (the agent sees the env unchanged)."""

    def __init__(self, env):
        self.env, self.results = env, []

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step(self, action):
        self.results.append(self.env.step(action).clone())
        return self.results[-1]


@pytest.fixture(scope="module")
def short_env():
    """CartpoleBalance with 4-step episodes: truncations land inside a 6-step rollout."""
    return make_env(
        "CartpoleBalance", 4, device="cpu", backend="mujoco", seed=0, reset_pool_size=8, num_threads=1, episode_length=4
    )


@pytest.mark.parametrize("bootstrap", [True, False])
def test_rollout_bootstraps_truncated_steps_from_their_final_observation(short_env, bootstrap):
    torch.manual_seed(0)
    config = PQNConfig(
        **SMALL,
        noise_start=0.0,
        noise_finish=0.0,
        normalize_obs=False,
        bootstrap_truncation=bootstrap,
        stagger_episodes=False,
    )  # lockstep episodes: the truncation step is known
    agent = PQN.for_env(short_env, config, total_timesteps=240)
    env = Recorder(short_env)
    agent.reset(env)
    storage = agent.collect(env)
    truncated = storage["truncated"]
    assert truncated[3].all() and truncated.sum() == 4  # episode length 4: every env truncates at step 3
    step = env.results[3]
    with torch.no_grad():  # noise-free, so the bootstrap value is the deterministic actor's at the final obs
        value = agent.critic.mean_q(step["final_critic_obs"], agent.actor(step["final_obs"]))
    expected = storage["reward"][3] + config.gamma * value if bootstrap else storage["reward"][3]
    torch.testing.assert_close(storage["target"][3], expected)
    assert not torch.equal(step["final_obs"], step["obs"])  # the bootstrap state is not the reset state


@pytest.mark.parametrize("stagger", [True, False])
def test_training_starts_with_staggered_time_limits(stagger):
    """Regression test of the late-training collapse: envs started in lockstep all truncate in one step.

    With ``stagger_episodes`` (the default) the first 16-step episodes of 64 envs end spread over the
    first rollout, so later rollouts mix every phase of the episode.
    """
    env = make_env("CartpoleBalance", 64, device="cpu", backend="mujoco", seed=0, num_threads=1, episode_length=16)
    small = dict(SMALL, num_envs=64, num_steps=16)
    config = PQNConfig(**small) if stagger else PQNConfig(**small, stagger_episodes=False)
    agent = PQN.for_env(env, config, total_timesteps=64 * 16 * 2)
    agent.reset(env)
    first = agent.collect(env)["truncated"].clone()
    second = agent.collect(env)["truncated"]
    assert first.sum() == second.sum() == 64  # every env ends exactly one episode per 16 steps
    assert torch.equal(first, second)  # and from then on at the same step of every rollout
    if stagger:
        assert first.any(dim=1).sum() >= 12 and first.sum(dim=1).max() <= 16  # spread over the steps
    else:
        assert first[15].all()  # all 64 in the last step


def test_pop_metrics_averages_what_the_rollout_and_update_produced(short_env):
    config = PQNConfig(**SMALL, stagger_episodes=False)  # lockstep: every env finishes one 4-step episode
    agent = PQN.for_env(short_env, config, total_timesteps=240)  # 10 updates of 24 env steps
    env = Recorder(short_env)
    agent.reset(env)
    agent.train_iteration(env)
    storage = agent.storage
    done = torch.stack([result["done"] for result in env.results])
    returns = torch.stack([result["episode_return"] for result in env.results])[done]
    counters = {"env/episodes": short_env.stats["episodes"], "answer": torch.tensor(42)}
    metrics = agent.pop_metrics(counters)

    assert metrics["episodes"] == done.sum() == 4  # episode length 4 in a 6-step rollout of 4 envs
    assert metrics["episode_return"] == pytest.approx(returns.mean().item())
    assert metrics["episode_length"] == 4.0
    assert metrics["reward_mean"] == pytest.approx(storage["reward"].mean().item())
    assert metrics["target_mean"] == pytest.approx(storage["target"].mean().item())
    # schedules after 1 of 10 updates and 2 x 2 gradient steps of 40
    assert metrics["sigma"] == pytest.approx(1.0 + (0.15 - 1.0) * 1 / 10)
    assert metrics["learning_rate"] == pytest.approx(1e-4 + (5e-7 - 1e-4) * 4 / 40)
    assert metrics["env/episodes"] == int(short_env.stats["episodes"]) and metrics["answer"] == 42
    assert {"critic_loss", "actor_loss", "q_mean", "critic_grad_norm"} <= set(metrics)

    again = agent.pop_metrics()  # sums were reset: nothing happened since
    assert again["episodes"] == 0 and "critic_loss" not in again and "episode_return" not in again


def test_each_metric_is_popped_under_its_own_name(short_env):
    """Every update and rollout metric equals its definition, recomputed by hand from the rollout and the
    weights before the update (one minibatch of the whole rollout): a value logged under another
    metric's name fails here."""
    torch.manual_seed(4)
    config = PQNConfig(**dict(SMALL, num_epochs=1, num_minibatches=1), penalty_threshold=0.1, normalize_reward=True)
    agent = PQN.for_env(short_env, config, total_timesteps=240)
    agent.reset(short_env)
    batch = agent.collect(short_env).reshape(-1).clone()
    with torch.no_grad():  # weights unlike the rollout's: the update's Q-values and actions differ from the rollout's
        for parameter in agent.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    actor = Actor(short_env.obs_dim, short_env.action_low, short_env.action_high, (16,))
    actor.load_state_dict(agent.actor.state_dict())
    critic = CriticEnsemble(short_env.critic_obs_dim, 1, (16,), 2)
    critic.load_state_dict(agent.critic.state_dict())
    agent.learn()
    metrics = agent.pop_metrics()

    q_values = critic(batch["critic_obs"], batch["action"])  # [critics, samples]
    errors = (q_values - batch["target"]).abs()
    value_loss = torch.where(errors < 1, 0.5 * errors**2, errors - 0.5).mean(dim=1).sum()
    new_action = actor(batch["obs"])
    change = ((new_action - batch["original_action"]) / actor.action_scale).abs().mean(dim=1)  # symmetric range
    active = change >= 0.1
    moved = (new_action - batch["original_action"]).abs()
    penalty = torch.where(moved < 1, 0.5 * moved**2, moved - 0.5).mean(dim=1)
    policy_loss = (-critic(batch["critic_obs"], new_action).mean(dim=0) + torch.where(active, 10.0 * penalty, 0)).mean()

    def gradient_norm(loss, module):
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(module.parameters()))]).norm()

    expected = {
        "critic_loss": value_loss,
        "actor_loss": policy_loss,
        "q_mean": q_values.mean(),
        "critic_grad_norm": gradient_norm(value_loss, critic),
        "actor_grad_norm": gradient_norm(policy_loss, actor),
        "penalty_fraction": active.float().mean(),
        "reward_mean": batch["reward"].mean(),
        "value_mean": batch["value"].mean(),
        "target_mean": batch["target"].mean(),
    }
    expected = {name: value.item() for name, value in expected.items()}
    assert 0 < expected["penalty_fraction"] < 1
    assert len({round(value, 5) for value in expected.values()}) == len(expected)  # a swap would show
    assert {name: metrics[name] for name in expected} == pytest.approx(expected, rel=1e-4)


def test_minibatch_step_gradients_actor_against_the_critic_from_before_its_step(short_env):
    torch.manual_seed(1)
    agent = PQN.for_env(short_env, PQNConfig(**SMALL), total_timesteps=240)
    agent.reset(short_env)
    agent.collect(short_env)
    old_actor = Actor(short_env.obs_dim, short_env.action_low, short_env.action_high, (16,))
    old_actor.load_state_dict(agent.actor.state_dict())
    old_critic = CriticEnsemble(short_env.critic_obs_dim, 1, (16,), 2)
    old_critic.load_state_dict(agent.critic.state_dict())
    indices = torch.arange(0, 24, 2)
    agent.minibatch_step(indices)
    batch = agent.storage.reshape(-1)[indices]

    assert (agent.config.penalty_threshold, agent.config.penalty_coeff) == (0.15, 10.0)
    policy_loss, value_loss = plain_losses(old_actor, old_critic, batch, agent.config)
    for module, loss, trained in ((old_actor, policy_loss, agent.actor), (old_critic, value_loss, agent.critic)):
        grads = torch.autograd.grad(loss, list(module.parameters()))
        norm = torch.sqrt(sum((g**2).sum() for g in grads)).item()
        clip = min(1.0, agent.config.max_grad_norm / (norm + 1e-6))
        # .grad keeps the clipped gradient of the step
        for param, grad in zip(trained.parameters(), grads, strict=True):
            torch.testing.assert_close(param.grad, grad * clip)
        assert not all(torch.equal(a, b) for a, b in zip(module.parameters(), trained.parameters(), strict=True))


def plain_losses(actor, critic, minibatch, config):
    """(actor loss, critic loss) of one gradient step on ``minibatch``, the plain way: autograd graphs, the
    actor scored by the critic as given, the critic on the rollout's actions."""
    new_action = actor(minibatch["obs"])
    policy_loss, _ = actor_loss(
        critic.mean_q(minibatch["critic_obs"], new_action),
        new_action,
        minibatch["original_action"],
        actor.action_scale,
        actor.action_bias,
        config.penalty_threshold,
        config.penalty_coeff,
    )
    value_loss = critic_loss(critic(minibatch["critic_obs"], minibatch["action"]), minibatch["target"])
    return policy_loss, value_loss


def plain_update(actor, critic, optimizers, batch, config, lr_schedule, grad_steps):
    """PQN's update written the plain way, without the agent's speed tricks (see ``PQN._minibatch_step``).

    Per-parameter RAdam and ``clip_grad_norm_`` over each module's own parameters, one critic call per
    loss, both losses taken before either network steps; the shuffle draws what the agent draws.
    """
    actor_optimizer, critic_optimizer = optimizers
    for _ in range(config.num_epochs):
        permutation = torch.rand(len(batch)).argsort()
        for indices in permutation.split(config.minibatch_size):
            minibatch = batch[indices]
            for optimizer in optimizers:
                optimizer.param_groups[0]["lr"].copy_(lr_schedule(torch.tensor(grad_steps)))
            grad_steps += 1
            policy_loss, value_loss = plain_losses(actor, critic, minibatch, config)
            for module, loss in ((actor, policy_loss), (critic, value_loss)):
                parameters = list(module.parameters())
                for parameter, grad in zip(parameters, torch.autograd.grad(loss, parameters), strict=True):
                    parameter.grad = grad
                torch.nn.utils.clip_grad_norm_(module.parameters(), config.max_grad_norm)
            actor_optimizer.step()
            critic_optimizer.step()
    return grad_steps


@pytest.mark.parametrize("split_update", [False, True])
def test_training_iterations_equal_the_plain_update(short_env, split_update):
    """The agent's optimized update (flat parameters, hand-written gradients; a critic's passes on a
    second thread or not) learns what the plain update learns: same rollouts, same shuffles, same weights."""
    torch.manual_seed(2)
    config = PQNConfig(**SMALL, lr_start=1e-2, lr_end=1e-3)  # steps large enough that any change shows
    agent = PQN.for_env(short_env, config, total_timesteps=240, split_update=split_update)
    actor = Actor(short_env.obs_dim, short_env.action_low, short_env.action_high, config.actor_hidden_sizes)
    critic = CriticEnsemble(
        short_env.critic_obs_dim, short_env.action_dim, config.critic_hidden_sizes, config.num_critics
    )
    actor.load_state_dict(agent.actor.state_dict())
    critic.load_state_dict(agent.critic.state_dict())
    optimizers = [
        torch.optim.RAdam(module.parameters(), lr=torch.tensor(config.lr_start)) for module in (actor, critic)
    ]
    initial = [parameter.detach().clone() for parameter in (*actor.parameters(), *critic.parameters())]
    agent.reset(short_env)
    grad_steps = 0
    for _ in range(4):
        batch = agent.collect(short_env).reshape(-1).clone()
        rng = torch.get_rng_state()
        agent.learn()
        after_agent = torch.get_rng_state()
        torch.set_rng_state(rng)
        grad_steps = plain_update(actor, critic, optimizers, batch, config, agent.lr_schedule, grad_steps)
        assert torch.equal(torch.get_rng_state(), after_agent)  # the same random draws, in the same order
    assert grad_steps == int(agent.grad_steps) == 4 * config.num_epochs * config.num_minibatches
    assert agent.split_updates == (4 if split_update else 0)
    plain = [*actor.parameters(), *critic.parameters()]
    trained = [*agent.actor.parameters(), *agent.critic.parameters()]
    for start, expected, got in zip(initial, plain, trained, strict=True):
        assert not torch.equal(expected, start)  # every tensor learned
        torch.testing.assert_close(got - start, expected - start, rtol=1e-4, atol=1e-7)


def test_the_update_learns_the_same_with_and_without_the_second_thread():
    """split_update runs the actor's half of each step on a second thread; no result may depend on that."""
    config = PQNConfig(
        num_envs=16, num_steps=16, num_epochs=2, num_minibatches=2, actor_hidden_sizes=(64,), critic_hidden_sizes=(256,)
    )
    trained = []
    for split_update in (False, True):
        env = make_env("CartpoleBalance", 16, device="cpu", backend="mujoco", seed=0, num_threads=1)
        torch.manual_seed(0)
        agent = PQN.for_env(env, config, total_timesteps=16 * 16 * 3, split_update=split_update)
        agent.reset(env)
        for _ in range(3):
            agent.train_iteration(env)
        assert agent.split_updates == (3 if split_update else 0)
        trained.append(agent.state_dict())
    for (name, value), other in zip(trained[0].items(), trained[1].values(), strict=True):
        assert torch.equal(value, other), name


def test_split_update_auto_alternates_with_timing_and_refuses_impossible_settings(short_env, monkeypatch):
    agent = PQN.for_env(short_env, PQNConfig(**SMALL), total_timesteps=240)  # split_update="auto" on the CPU
    seconds = {False: 0.01, True: 0.03}  # the split is slower here, whatever the machine
    monkeypatch.setattr(agent, "_learn_call", lambda: time.sleep(seconds[agent._split]))
    for _ in range(5):
        agent.learn()
    assert agent.split_updates == 2  # the warm-up call (split by default) and the split's timing call
    seconds.update({False: 0.03, True: 0.01})
    agent._split_chooser.calls = agent._split_chooser.interval  # next call starts a new timing round
    for _ in range(4):
        agent.learn()
    # the round's first call runs serial (the last choice), then one timing each, then the split (now faster)
    assert agent.split_updates == 2 + 2 and agent._split_chooser.choice
    with pytest.raises(ValueError, match="split_update=true needs the CPU and compile=false"):
        PQN.for_env(short_env, PQNConfig(**SMALL), total_timesteps=240, compile=True, split_update=True)
    with pytest.raises(ValueError, match="split_update must be true, false or auto, got 'yes'"):
        PQN.for_env(short_env, PQNConfig(**SMALL), total_timesteps=240, split_update="yes")


def test_faster_of_two_keeps_the_faster_option_between_timings():
    chooser = FasterOfTwo(interval=4, initial=True)
    durations = {False: 0.002, True: 0.02}
    ran = [chooser(lambda option: time.sleep(durations[option])) for _ in range(8)]
    # call 0 warms up with the initial option; 1 and 2 time False and True; 3 uses the faster (False);
    # the next round again warms up with the current choice, times both, keeps the faster
    assert ran == [True, False, True, False, False, False, True, False]
    assert chooser.seconds[False] < chooser.seconds[True]
    with pytest.raises(ValueError, match="interval must be an integer >= 3"):
        FasterOfTwo(interval=2)


@pytest.mark.slow
def test_compiled_hot_paths_match_eager(short_env):
    """``compile=True`` (torch.compile; CUDA graphs only on CUDA) computes what the eager agent does."""

    def make(compiled):
        torch.manual_seed(3)  # identical initial weights
        return PQN.for_env(short_env, PQNConfig(**SMALL), total_timesteps=240, compile=compiled)

    eager, compiled = make(False), make(True)
    eager.reset(short_env)
    eager.collect(short_env)
    compiled.storage.update_(eager.storage)
    indices = torch.arange(12)
    torch.testing.assert_close(compiled.minibatch_step(indices), eager.minibatch_step(indices), rtol=1e-4, atol=1e-5)
    obs = eager.storage["obs"][0]
    sigma = torch.zeros(short_env.num_envs)  # noise-free, so both must give the same actions and values
    compiled_outs, eager_outs = compiled.policy_step(obs, obs, sigma), eager.policy_step(obs, obs, sigma)
    for compiled_out, eager_out in zip(compiled_outs, eager_outs, strict=True):
        torch.testing.assert_close(compiled_out, eager_out, rtol=1e-4, atol=1e-5)
