"""The GAN train_step the one training core drives (zoo.training.train: ``model.compile`` then ``model.fit``).

One ``fit`` step = one iteration of Hu et al.'s game (IEEE JBHI 2019, section IV-B): ``n_critic`` (5) critic steps,
one generator step, one auxiliary-network step, "D, G and Q in turn", with the losses of zoo.losses.gan (eq. 10-12,
eq. 12's sign corrected). Each critic step takes its own 1/n_critic of the step's batch of real crops (fresh real
samples per critic iteration, as Gulrajani et al.'s Algorithm 1), so the input ``batch_size`` is n_critic x the
paper's 64; the G and Q steps draw as many noise vectors as a critic step has real crops. Adam for all three networks
(Hu: lr 2e-4, beta_1 0.5, beta_2 0.9; Yuan & Suh sec. 3.3: D_Q 2e-4, G 1e-4, D_D 1e-4): G's optimizer is the one the
training core makes from the experiment config (so its ``learning_rate``, schedule, step count and resume are the
core's), D's and Q's come from the model config. Noise is drawn from the model's SeedGenerator, whose state the core
checkpoints, so a resumed run draws what the uninterrupted one drew.

``mi_schedule: released`` (the model config) runs Hu et al.'s released code instead: a step on L_MI alone after every
critic step and after the G step, each updating Q's variables and G (G through its own Adam), and a G step without
the MI term; the paper's text and the issue describe the default schedule.

Logged per epoch (running means over the epoch's iterations): ``loss`` = L_D (the critic's loss, eq. 10, what the core
watches for divergence), ``v_dg`` = V(D, G) = E[D(x)] - E[D(G(z, c))] (eq. 8, the critic's Wasserstein estimate),
``gp`` (the gradient penalty), ``g_loss`` (L_G), ``q_loss`` (L_Q).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from zoo.errors import ConfigError
from zoo.losses.gan import InfoWGANGPLoss, gradient_penalty, mutual_information_loss



def _adam(model, optimizer, why: str):
    """The game's generator-side optimizer: Adam 2e-4 by default, a name resolved by Keras; anything but Adam is a
    one-line ConfigError (``why`` says whose rule it is)."""
    if optimizer is None:
        optimizer = keras.optimizers.Adam(2e-4)
    elif isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    if not isinstance(optimizer, keras.optimizers.Adam):
        raise ConfigError(f"model {model.registry_name!r}: {why}; set optimizer: adam "
                          f"(got {type(optimizer).__name__})")
    return optimizer


def compile_game(model, optimizer=None, loss=None, run_eagerly=False, jit_compile="auto", **_ignored) -> None:
    """Set up ``model`` (a zoo.models.gan.InfoGAN) for ``fit``: G's Adam = ``optimizer`` (default Adam 2e-4) with the
    config's betas; D's and Q's Adam from the config; ``loss`` an InfoWGANGPLoss (default lambda_gp 10, lambda_info
    1). Other Keras compile arguments (the core's ``weighted_metrics=[]``) have no meaning for the game."""
    cfg = model.config
    if not model.built:  # the steps take each network's variables by name: they must exist before the first step
        model.build((None, cfg.image_size, cfg.image_size, 3))
    optimizer = _adam(model, optimizer, "the GAN trains with Adam (Hu et al. IV-B)")
    optimizer.beta_1, optimizer.beta_2 = cfg.beta_1, cfg.beta_2
    if loss is None:
        loss = InfoWGANGPLoss()
    if not isinstance(loss, InfoWGANGPLoss):
        raise ConfigError(f"model {model.registry_name!r}: the GAN trains with loss: infowgan_gp (got "
                          f"{getattr(loss, 'name', type(loss).__name__)!r})")
    keras.Model.compile(model, optimizer=optimizer, run_eagerly=run_eagerly, jit_compile=jit_compile)
    # set past Keras' attribute tracking, as Keras' own compile sets ``optimizer``: the model is already built (its
    # tracker is locked); .keras saving still finds the optimizers (it walks the attributes by name)
    object.__setattr__(model, "g_optimizer", optimizer)
    adams = [("d_optimizer", cfg.d_learning_rate), ("q_optimizer", cfg.q_learning_rate)]
    if cfg.mi_schedule == "released":  # G's own Adam for its MI steps (Hu et al.'s released code: optimizerQ_G)
        adams.append(("qg_optimizer", cfg.q_learning_rate))
    for name, lr in adams:
        object.__setattr__(model, name, keras.optimizers.Adam(lr, beta_1=cfg.beta_1, beta_2=cfg.beta_2, name=name))
    object.__setattr__(model, "gan_loss", loss)
    for m in model.metrics:
        m.reset_state()


def _apply(optimizer, loss, tape, variables) -> None:
    grads = tape.gradient(loss, variables)
    optimizer.apply_gradients(zip(grads, variables))


def critic_step(model, real):
    """One D step on real images in [-1, 1]: minimise L_D (eq. 10) over D's variables. Returns (L_D, V(D,G), GP)."""
    noise, _ = model.noise(tf.shape(real)[0])
    fake = model.generate_scaled(noise, training=True)
    variables = model.critic_variables()
    with tf.GradientTape() as tape:
        d_real = model.critic(real, training=True)
        d_fake = model.critic(fake, training=True)
        gp = gradient_penalty(lambda t: model.critic(t, training=True), real, fake, seed=model.seed_generator)
        loss = model.gan_loss.critic_loss(d_real, d_fake, gp)
    _apply(model.d_optimizer, loss, tape, variables)
    return loss, tf.reduce_mean(d_real) - tf.reduce_mean(d_fake), gp


def generator_step(model, batch, with_mi: bool = True):
    """One G step: minimise L_G = -E[D(G(z,c))] + lambda_2 L_MI (eq. 11) over G's variables; without ``with_mi``
    (the released code's schedule) -E[D(G(z,c))] alone. Returns L_G."""
    noise, c = model.noise(batch)
    variables = model.generator_variables()
    with tf.GradientTape() as tape:
        fake = model.generate_scaled(noise, training=True)
        mi = mutual_information_loss(c, model.q_logits(fake, training=True)) if with_mi else 0.0
        loss = model.gan_loss.generator_loss(model.critic(fake, training=True), mi)
    _apply(model.g_optimizer, loss, tape, variables)
    return loss


def info_step(model, batch, generator: bool = False):
    """One Q step: minimise L_Q = -lambda_2 E[log Q(c|G(z,c))] over Q's variables (with a shared trunk, the trunk
    too); with ``generator`` (the released code's schedule) G's variables too, through G's MI Adam. Returns L_Q."""
    noise, c = model.noise(batch)
    q_vars = model.q_variables()
    g_vars = model.generator_variables() if generator else []
    fake = None if generator else model.generate_scaled(noise, training=True)
    with tf.GradientTape() as tape:
        if generator:
            fake = model.generate_scaled(noise, training=True)
        loss = model.gan_loss.info_loss(mutual_information_loss(c, model.q_logits(fake, training=True)))
    grads = tape.gradient(loss, q_vars + g_vars)
    model.q_optimizer.apply_gradients(zip(grads[:len(q_vars)], q_vars))
    if generator:
        model.qg_optimizer.apply_gradients(zip(grads[len(q_vars):], g_vars))
    return loss


def train_step(model, data) -> dict:
    """One iteration: n_critic critic steps, one G step, one Q step (``mi_schedule: paper``); with ``released``, an
    MI step on Q and G after every critic step and after the G step, and no MI term in the G step."""
    x = data[0] if isinstance(data, (tuple, list)) else data
    real = tf.cast(x, tf.float32) * 2.0 - 1.0
    n = model.config.n_critic
    released = model.config.mi_schedule == "released"
    share = tf.shape(real)[0] // n
    tf.debugging.assert_positive(share, message=f"a GAN step needs a batch of at least n_critic = {n} crops")
    t = model._game_trackers
    for i in range(n):
        loss, v, gp = critic_step(model, real[i * share:(i + 1) * share])
        t["loss"].update_state(loss)
        t["v_dg"].update_state(v)
        t["gp"].update_state(gp)
        if released:
            t["q_loss"].update_state(info_step(model, share, generator=True))
    t["g_loss"].update_state(generator_step(model, share, with_mi=not released))
    t["q_loss"].update_state(info_step(model, share, generator=released))
    return {k: m.result() for k, m in t.items()}



# ------------------------------------------------------------------------------------------------ SimGAN refiner
def compile_refiner(model, optimizer=None, loss=None, run_eagerly=False, jit_compile=False, **_ignored) -> None:
    """Set up ``model`` (a zoo.models.simgan.SimGANRefiner) for ``fit``: R's Adam = ``optimizer`` (default Adam 2e-4)
    with the config's beta_1, D's Adam from the config, ``loss`` a SimGANLoss (default lambda_reg 1.0). No XLA: the
    step selects the batch's real and synthetic samples with data-dependent shapes."""
    from zoo.losses.simgan import SimGANLoss

    cfg = model.config
    if not model.built:
        model.build((None, None, None, 3))
    optimizer = _adam(model, optimizer, "the refiner trains with Adam")
    optimizer.beta_1 = cfg.beta_1
    if loss is None:
        loss = SimGANLoss()
    if not isinstance(loss, SimGANLoss):
        raise ConfigError(f"model {model.registry_name!r}: the refiner trains with loss: simgan (got "
                          f"{getattr(loss, 'name', type(loss).__name__)!r})")
    keras.Model.compile(model, optimizer=optimizer, run_eagerly=run_eagerly, jit_compile=False)
    object.__setattr__(model, "r_optimizer", optimizer)
    object.__setattr__(model, "d_optimizer", keras.optimizers.Adam(cfg.d_learning_rate, beta_1=cfg.beta_1,
                                                                   name="d_optimizer"))
    object.__setattr__(model, "gan_loss", loss)
    for m in model.metrics:
        m.reset_state()


def _real_mask(w, batch):
    """1.0 for the samples whose per-pixel weights are all 0 (unlabelled real images, zoo.models.simgan's data
    contract), else 0.0; [B]."""
    if isinstance(w, dict):
        w = next(iter(w.values()))
    flat = tf.reshape(tf.cast(w, tf.float32), tf.stack([batch, -1]))
    return tf.cast(tf.reduce_max(flat, axis=1) <= 0.0, tf.float32)


def _history_draw(model, k):
    """(k images drawn uniformly from the filled part of the history buffer, their weights: 1 once it has any)."""
    filled = tf.convert_to_tensor(model.history_filled)
    idx = keras.random.randint((k,), 0, tf.maximum(filled, 1), seed=model.seed_generator, dtype="int32")
    return tf.gather(tf.convert_to_tensor(model.history_buffer), idx), tf.fill([k], tf.cast(filled > 0, tf.float32))


def _history_write(model, refined, synthetic):
    """Write the batch's refined synthetic images into the buffer: appended while it has room, then at uniformly
    random places (Shrivastava sec. 2.3)."""
    new = tf.boolean_mask(refined, synthetic > 0)
    m = tf.shape(new)[0]
    size = model.config.history_size
    filled = tf.convert_to_tensor(model.history_filled)
    slot = filled + tf.range(m)
    rand = keras.random.randint((m,), 0, size, seed=model.seed_generator, dtype="int32")
    pos = tf.where(slot < size, slot, rand)
    buffer = tf.convert_to_tensor(model.history_buffer)
    model.history_buffer.assign(tf.tensor_scatter_nd_update(buffer, pos[:, None], new))
    model.history_filled.assign(tf.minimum(filled + m, size))


def refiner_train_step(model, data) -> dict:
    """One SimGAN iteration (Shrivastava et al. Algorithm 1 with K_d = K_g = 1; Bhatia sec. 3.2.1): a D step on the
    batch's real images against its refined synthetic images plus as many from the history buffer, then an R step on
    its synthetic images (L_R = adversarial + lambda * L1). Real vs synthetic per sample: zoo.models.simgan's data
    contract (all-zero weights = unlabelled real image)."""
    x, w = data[0], (data[2] if isinstance(data, (tuple, list)) and len(data) > 2 else None)
    p = model.config.patch_size
    if x.shape[1] is not None and (x.shape[1] != p or x.shape[2] != p):
        raise ConfigError(f"model {model.registry_name!r}: training patches are {x.shape[1]} x {x.shape[2]} px, "
                          f"the history buffer holds {p} x {p}: set model_config.patch_size = input.patch_size")
    x = tf.cast(x, tf.float32) * 2.0 - 1.0
    b = tf.shape(x)[0]
    real = _real_mask(w, b) if w is not None else tf.zeros([b])
    synthetic = 1.0 - real
    loss = model.gan_loss
    # D step: real images (label "real") vs current + history refined images (label "refined")
    refined = model.refine_scaled(x, training=True)
    hist, hist_w = _history_draw(model, b)
    d_vars = model.discriminator_variables()
    with tf.GradientTape() as tape:
        d_loss = loss.discriminator_loss(model.discriminate(x, training=True), real,
                                         model.discriminate(tf.concat([refined, hist], 0), training=True),
                                         tf.concat([synthetic, hist_w], 0))
    _apply(model.d_optimizer, d_loss, tape, d_vars)
    _history_write(model, refined, synthetic)
    # R step: fool D on the synthetic images, stay close to them (L1)
    r_vars = model.refiner_variables()
    with tf.GradientTape() as tape:
        r = model.refine_scaled(x, training=True)
        r_loss, adv, l1 = loss.refiner_loss(model.discriminate(r, training=True), (r + 1.0) * 0.5,
                                            (x + 1.0) * 0.5, synthetic)
    _apply(model.r_optimizer, r_loss, tape, r_vars)
    t = model._game_trackers
    for k, v in (("loss", r_loss), ("d_loss", d_loss), ("adv_loss", adv), ("l1", l1),
                 ("real_fraction", tf.reduce_mean(real))):
        t[k].update_state(v)
    return {k: m.result() for k, m in t.items()}
