//! The registries: one place for each family of names a spec may use (solvers, network
//! activations, time embeddings, metrics, regression targets). Each registry is one enum with
//! one row per name; the checker's choice lists ([`crate::check::SOLVERS`] and friends) are
//! these rows' names, and every later stage matches the enum exhaustively, so a name can
//! neither be accepted and then ignored nor fall back silently to another.

/// Declares a registry: an enum, its rows `Variant => "name"`, the name list `NAMES`, and
/// `name` / `from_name` / `ALL`.
macro_rules! registry {
    ($(#[$doc:meta])* $enum:ident, $names:ident { $($(#[$vdoc:meta])* $variant:ident => $name:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $enum {
            $($(#[$vdoc])* $variant,)*
        }

        /// Every name of the registry, in declaration order.
        pub const $names: &[&str] = &[$($name,)*];

        impl $enum {
            /// Every row, in declaration order.
            pub const ALL: &'static [$enum] = &[$($enum::$variant,)*];

            /// The name a spec writes.
            pub fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)*
                }
            }

            /// The row of a name; `None` for a name that is not in the registry.
            pub fn from_name(name: &str) -> Option<$enum> {
                $enum::ALL.iter().copied().find(|v| v.name() == name)
            }
        }

        impl std::fmt::Display for $enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

registry! {
    /// Reverse-time samplers (`sample { solver = NAME }`). Each family says which it supports.
    Solver, SOLVER_NAMES {
        /// Euler on the probability-flow ODE.
        OdeEuler => "ode_euler",
        /// Heun (2nd order) on the probability-flow ODE.
        OdeHeun => "ode_heun",
        /// Euler–Maruyama on the reverse SDE.
        EulerMaruyama => "euler_maruyama",
        /// Exponential integrator of the probability-flow ODE, exact in the linear part. For
        /// Gaussian marginals it is written in α_t, σ_t only (DPM-Solver-1 in noise form,
        /// Lu et al. 2022): x_s = (α_s/α_t) x_t − σ_s (e^h − 1) ε̂, h = λ_s − λ_t.
        ExponentialOde => "exponential_ode",
        /// Exponential integrator with the family's exact noise (SDE).
        ExponentialSde => "exponential_sde",
        /// The posterior (DDPM / DDIM η = 1) step z_s ~ q(z_s | z_t, x̂), for NDM.
        Ancestral => "ancestral",
        /// DDIM (Song et al. 2021), in α_t, σ_t only: x_s = α_s x̂0 + √(σ_s² − c²) ε̂ + c z with
        /// c = η σ_s √(1 − SNR_s⁻¹ SNR_t); η (`sample { eta = … }`) is 0 (deterministic) by
        /// default, 1 is DDPM's posterior noise.
        Ddim => "ddim",
        /// DPM-Solver++(2M) (Lu et al. 2022), multistep second order in the data prediction
        /// x̂0, in α_t, σ_t only; first order on the first step (and the last, under 15 steps).
        DpmSolverPp2m => "dpmpp_2m",
        /// Second-order multistep exponential integrator of the probability-flow ODE (Adams–
        /// Bashforth 2 in the nonlinear part, exact in the linear part): one network evaluation
        /// per step, as `exponential_ode`; first order on the first step. For jump processes,
        /// whose marginal has no α_t, σ_t (docs/jl_atom.md §5).
        ExponentialOde2m => "exponential_ode_2m",
    }
}

impl Solver {
    pub fn is_stochastic(self) -> bool {
        match self {
            Solver::EulerMaruyama | Solver::ExponentialSde | Solver::Ancestral => true,
            // DDIM is stochastic only with η > 0, a sample setting.
            Solver::OdeEuler
            | Solver::OdeHeun
            | Solver::ExponentialOde
            | Solver::Ddim
            | Solver::DpmSolverPp2m
            | Solver::ExponentialOde2m => false,
        }
    }
}

registry! {
    /// Time grids of the samplers (`sample { grid = NAME }`).
    TimeGrid, GRID_NAMES {
        /// Steps of equal length in t.
        Uniform => "uniform",
        /// Steps of equal length in γ = −log SNR (log s_t²/m_t²): small steps where the
        /// signal-to-noise ratio changes fast (families with a Gaussian marginal). For jump
        /// processes γ = ln(e^{λt} − 1), the log-odds that a jump has happened.
        LogSnr => "log_snr",
        /// Two uniform phases, as the trans-dimensional reference sampler's `dt_schedule = 'C'`:
        /// a coarse step 50× the fine one over the upper half of the horizon, fine steps below
        /// (510 steps on [0, 1] give 10 steps of 0.05 and 500 of 0.001). Every family's update
        /// uses the actual step length.
        CoarseFine => "coarse_fine",
        /// EDM's grid (Karras et al. 2022, ρ = 7) in σ̃ = σ_t/α_t: σ̃_k = (σ̃_max^{1/ρ} +
        /// k/K (σ̃_min^{1/ρ} − σ̃_max^{1/ρ}))^ρ, mapped back to t (families with a Gaussian
        /// marginal).
        Edm => "edm",
    }
}

registry! {
    /// Network architectures (`network = NAME(...)`). The process decides which it needs:
    /// vectors take the MLP, sets (trans-dimensional processes) the set transformer or the EGNN.
    NetworkKind, NETWORK_NAMES {
        /// Residual MLP on `[B, D]` states with a time embedding.
        Mlp => "mlp",
        /// Masked, permutation-equivariant transformer over the components of a set, with
        /// ε, n_0-classifier and insertion heads.
        SetTransformer => "set_transformer",
        /// E(n)-equivariant graph network over the components of a set (EDM's molecule
        /// network): the entries named by the state's `com = NAME` are coordinates, the rest
        /// features; the same heads as the set transformer.
        Egnn => "egnn",
        /// U-Net over image states `[B, C, H, W]` (`width` = channels of the first level,
        /// `depth` = number of resolutions, `attention` at the lowest one).
        Unet => "unet",
    }
}

registry! {
    /// Hidden-layer activations of the networks (`mlp(activation = NAME)`).
    ActivationKind, ACTIVATION_NAMES {
        Gelu => "gelu",
        Silu => "silu",
        Relu => "relu",
        Tanh => "tanh",
    }
}

registry! {
    /// Time embeddings of the networks (`mlp(embedding = NAME)`).
    EmbeddingKind, EMBEDDING_NAMES {
        /// Fixed sinusoids of t (transformer-style).
        Sinusoidal => "sinusoidal",
        /// Random Fourier features of t (fixed, seeded).
        Fourier => "fourier",
        /// A learned linear map of t followed by the activation.
        Linear => "linear",
    }
}

registry! {
    /// Sample-quality metrics (`metrics = [NAME, …]`); each writes the keys listed.
    MetricKind, METRIC_NAMES {
        /// prd_max_f1, prd_f8, prd_f1_8 (Sajjadi et al. 2018, the JL paper's metric).
        Prd => "prd",
        /// mmd2, mmd_bandwidth, mmd_dlpm.
        Mmd => "mmd",
        /// sliced_wasserstein.
        SlicedWasserstein => "sliced_wasserstein",
        /// msle (tail errors of log-quantiles).
        Msle => "msle",
        /// precision, recall, density, coverage (k-NN, k = 5).
        Knn => "knn",
        /// mode_fraction, mode_weight_tv (only for data with known modes).
        Modes => "modes",
    }
}

registry! {
    /// What the network regresses (`loss { target = NAME }`).
    Target, TARGET_NAMES {
        /// The noise ε.
        Eps => "eps",
        /// The clean data x_0.
        X0 => "x0",
        /// The (generalized) score.
        Score => "score",
    }
}

registry! {
    /// How the network's input and output are scaled (`loss { precondition = NAME }`).
    Precondition, PRECONDITION_NAMES {
        /// The network sees x_t and predicts the target directly.
        None => "none",
        /// EDM's preconditioning (Karras et al. 2022, Table 1), in a Gaussian marginal's
        /// m_t, s_t (σ̃ = s_t/m_t): the network F sees c_in·(x_t − c_t)/m_t and the denoiser is
        /// x̂0 = c_skip·(x_t − c_t)/m_t + c_out·F, with c_in = 1/√(σ̃² + σ_d²),
        /// c_skip = σ_d²/(σ̃² + σ_d²), c_out = σ̃σ_d/√(σ̃² + σ_d²). The loss ‖F − (x0 −
        /// c_skip·x̃)/c_out‖² is EDM's λ(σ)‖x̂0 − x0‖². Needs `target = x0`.
        Edm => "edm",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        fn check<T: Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            names: &[&str],
            name: fn(T) -> &'static str,
            from: fn(&str) -> Option<T>,
        ) {
            assert_eq!(all.len(), names.len());
            for (v, n) in all.iter().zip(names) {
                assert_eq!(name(*v), *n);
                assert_eq!(from(n), Some(*v));
            }
            let mut sorted = names.to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), names.len(), "duplicate names");
            assert_eq!(from("no_such_name"), None);
        }
        check(Solver::ALL, SOLVER_NAMES, Solver::name, Solver::from_name);
        check(
            TimeGrid::ALL,
            GRID_NAMES,
            TimeGrid::name,
            TimeGrid::from_name,
        );
        check(
            ActivationKind::ALL,
            ACTIVATION_NAMES,
            ActivationKind::name,
            ActivationKind::from_name,
        );
        check(
            EmbeddingKind::ALL,
            EMBEDDING_NAMES,
            EmbeddingKind::name,
            EmbeddingKind::from_name,
        );
        check(
            MetricKind::ALL,
            METRIC_NAMES,
            MetricKind::name,
            MetricKind::from_name,
        );
        check(Target::ALL, TARGET_NAMES, Target::name, Target::from_name);
        check(
            Precondition::ALL,
            PRECONDITION_NAMES,
            Precondition::name,
            Precondition::from_name,
        );
    }
}
