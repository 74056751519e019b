"""Deep Embedded Clustering (Xie, Girshick & Farhadi, ICML 2016): the "HOG + DEC" baseline of issue 20 (Hu et al.
IEEE JBHI 2019, Table III lists DEC beside k-means).

DEC learns an embedding z = f(x) and k centroids mu_j together:

- soft assignment (eq. 1), a Student's t kernel with alpha = 1:
  q_ij = (1 + ||z_i - mu_j||^2 / alpha)^(-(alpha + 1) / 2) / sum_j' (same for j');
- target distribution (eq. 3): p_ij = (q_ij^2 / f_j) / sum_j' (q_ij'^2 / f_j'), f_j = sum_i q_ij;
- loss (eq. 2): KL(P || Q) = sum_i sum_j p_ij log(p_ij / q_ij), minimised over f's weights and mu by SGD, P held fixed
  between updates and recomputed every ``update_interval`` batches; stop when fewer than ``tol`` of the points
  change cluster between two updates (sec. 3.1.3).

Initialisation (sec. 3.2): a d-500-500-2000-10 autoencoder (ReLU, linear embedding and output), then k-means
(20 restarts) on the embeddings gives mu. The paper pretrains it greedily layer by layer as a stacked denoising
autoencoder and then fine-tunes it end to end; here it is trained end to end at once, with the same input dropout
(0.2) as its denoising corruption (one stage instead of four: say so beside any number).
"""

from __future__ import annotations

import numpy as np


def soft_assignment(z: np.ndarray, mu: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """q_ij of DEC eq. 1 (numpy): Student's t similarity of embedding i to centroid j, rows normalised."""
    d2 = ((z[:, None, :] - mu[None, :, :]) ** 2).sum(-1)
    q = (1.0 + d2 / alpha) ** (-(alpha + 1.0) / 2.0)
    return q / q.sum(1, keepdims=True)


def target_distribution(q: np.ndarray) -> np.ndarray:
    """p_ij of DEC eq. 3: q squared, divided by the soft cluster frequency f_j = sum_i q_ij, rows normalised."""
    w = q ** 2 / q.sum(0)
    return w / w.sum(1, keepdims=True)


def _autoencoder(dim: int, dims: tuple, dropout: float):
    import keras

    x = keras.Input((dim,))
    h = keras.layers.Dropout(dropout)(x) if dropout else x
    for i, d in enumerate(dims[:-1]):
        h = keras.layers.Dense(d, activation="relu", name=f"enc_{i}")(h)
    z = keras.layers.Dense(dims[-1], name="embedding")(h)
    h = z
    for i, d in enumerate(reversed(dims[:-1])):
        h = keras.layers.Dense(d, activation="relu", name=f"dec_{i}")(h)
    y = keras.layers.Dense(dim, name="reconstruction")(h)
    return keras.Model(x, y), keras.Model(x, z)


def _clustering_model(encoder, mu: np.ndarray, alpha: float):
    """The encoder followed by DEC's clustering layer (eq. 1, centroids ``mu`` trainable)."""
    import keras
    from keras import ops

    class ClusteringLayer(keras.layers.Layer):
        def build(self, input_shape):
            self.mu = self.add_weight(shape=mu.shape, initializer=keras.initializers.Constant(mu), name="mu")

        def call(self, z):
            d2 = ops.sum(ops.square(ops.expand_dims(z, 1) - self.mu), axis=-1)
            q = ops.power(1.0 + d2 / alpha, -(alpha + 1.0) / 2.0)
            return q / ops.sum(q, axis=1, keepdims=True)

    return keras.Model(encoder.input, ClusteringLayer(name="clustering")(encoder.output))


def dec_clusters(features: np.ndarray, k: int, seed: int = 0, dims: tuple = (500, 500, 2000, 10),
                 pretrain_epochs: int = 100, batch_size: int = 256, update_interval: int = 140, tol: float = 0.001,
                 max_iterations: int = 20000, alpha: float = 1.0, dropout: float = 0.2,
                 progress: bool = False) -> dict:
    """DEC (Xie et al. 2016) on ``features`` [N, d] (standardised here): returns ``clusters`` [N] (argmax q),
    ``q`` [N, k], ``embedding`` [N, dims[-1]] and ``centroids`` [k, dims[-1]] at the end (q = eq. 1 of them),
    ``kmeans_clusters`` (the initialisation's k-means on the pretrained embedding), ``iterations``
    (SGD batches of the clustering stage), ``changed`` (the share of points whose cluster changed at the last
    target update) and ``converged`` (that share fell below ``tol``)."""
    import keras
    from sklearn.cluster import KMeans

    from zoo.evaluation.cluster import standardize

    (x,) = standardize(features, dtype=np.float32)
    keras.utils.set_random_seed(seed)
    ae, enc = _autoencoder(x.shape[1], tuple(dims), dropout)
    ae.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    ae.fit(x, x, batch_size=batch_size, epochs=pretrain_epochs, shuffle=True, verbose=1 if progress else 0)
    z = enc.predict(x, batch_size=1024, verbose=0)
    km = KMeans(n_clusters=k, n_init=20, random_state=seed).fit(z)
    model = _clustering_model(enc, km.cluster_centers_.astype(np.float32), alpha)
    # eq. 2: KL(P || Q); SGD lr 0.01, momentum 0.9 as sec. 4.3
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=keras.losses.KLDivergence())
    rng = np.random.default_rng(seed)
    previous = km.labels_.copy()
    order = rng.permutation(len(x))
    changed, converged, it = 1.0, False, 0
    p = None
    while it < max_iterations:
        if it % update_interval == 0:
            q = model.predict(x, batch_size=1024, verbose=0)
            labels = q.argmax(1)
            changed = float((labels != previous).mean())
            previous = labels
            if it > 0 and changed < tol:
                converged = True
                break
            p = target_distribution(q)
        start = (it * batch_size) % len(x)
        idx = order[start:start + batch_size]
        if start + batch_size >= len(x):
            order = rng.permutation(len(x))
        model.train_on_batch(x[idx], p[idx])
        it += 1
    q = model.predict(x, batch_size=1024, verbose=0)
    return {"clusters": q.argmax(1), "q": q, "kmeans_clusters": km.labels_, "iterations": it, "changed": changed,
            "converged": converged, "embedding": enc.predict(x, batch_size=1024, verbose=0),
            "centroids": np.asarray(model.get_layer("clustering").mu)}
