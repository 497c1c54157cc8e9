//! The discrete decoder of the NDM / VDM likelihood bound (8-bit images, 17-level digits):
//! −log p(x | z) against a host computation, its limits, and the bound it gives.

use candle_core::{Device, Tensor};
use difc::compile::ndm::{discrete_nll, Decoder, Ndm, Schedule};
use difc::compile::{Nets, TimeSpan};
use difc::ir::{Expr, Target, Var};

/// −log p(x | u) = logsumexp_k(−½ snr (u − x_k)²) + ½ snr (u − x)², summed over coordinates,
/// in f64 on the host.
fn host_nll(u: &[f64], x: &[f64], levels: usize, snr: f64) -> f64 {
    let grid: Vec<f64> = (0..levels)
        .map(|k| -1.0 + 2.0 * k as f64 / (levels - 1) as f64)
        .collect();
    u.iter()
        .zip(x)
        .map(|(&u, &x)| {
            let l: Vec<f64> = grid.iter().map(|g| -0.5 * snr * (u - g).powi(2)).collect();
            let m = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + l.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            lse + 0.5 * snr * (u - x).powi(2)
        })
        .sum()
}

#[test]
fn the_decoder_matches_the_host_formula_and_its_limits() {
    let dev = Device::Cpu;
    let levels = 5; // grid −1, −0.5, 0, 0.5, 1
    let x = [-1.0, 0.5, 0.0, 1.0, -0.5, 0.5];
    let u = [-0.9, 0.3, 0.2, 1.4, -0.5, -0.1];
    for snr in [0.5, 4.0, 60.0] {
        let ut = Tensor::new(&u, &dev).unwrap().reshape((2, 3)).unwrap();
        let xt = Tensor::new(&x, &dev).unwrap().reshape((2, 3)).unwrap();
        let got = discrete_nll(&ut, &xt, levels, snr)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        for r in 0..2 {
            let want = host_nll(&u[3 * r..3 * r + 3], &x[3 * r..3 * r + 3], levels, snr);
            assert!(
                (got[r] - want).abs() < 1e-12 * want.abs().max(1.0),
                "{got:?} vs {want}"
            );
        }
    }
    // No information (snr → 0): every level equally likely, −log p = D log L.
    let ut = Tensor::new(&u, &dev).unwrap().reshape((1, 6)).unwrap();
    let xt = Tensor::new(&x, &dev).unwrap().reshape((1, 6)).unwrap();
    let flat = discrete_nll(&ut, &xt, levels, 1e-12)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0];
    assert!((flat - 6.0 * (levels as f64).ln()).abs() < 1e-9, "{flat}");
    // Perfect information (u = x, large snr): −log p → 0.
    let sharp = discrete_nll(&xt, &xt, levels, 1e4)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0];
    assert!(sharp.abs() < 1e-9, "{sharp}");
    // u halfway between two levels: p = ½ each (other levels negligible), −log p = log 2.
    let mid = Tensor::new(&[0.25f64], &dev)
        .unwrap()
        .reshape((1, 1))
        .unwrap();
    let at = Tensor::new(&[0.5f64], &dev)
        .unwrap()
        .reshape((1, 1))
        .unwrap();
    let half = discrete_nll(&mid, &at, levels, 1e3)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()[0];
    assert!((half - 2f64.ln()).abs() < 1e-9, "{half}");
}

/// VDM's linear log-SNR schedule on [0, 1] from γ_min to γ_max.
fn vdm(gamma_min: f64, gamma_max: f64) -> Schedule {
    let t = Expr::Var(Var::T);
    let g = Expr::c(gamma_min) + t * Expr::c(gamma_max - gamma_min);
    let alpha = (Expr::c(1.0) / (Expr::c(1.0) + g.clone().exp())).sqrt();
    let sigma = (Expr::c(1.0) / (Expr::c(1.0) + (-g).exp())).sqrt();
    Schedule::new(&alpha, &sigma)
}

#[test]
fn the_bound_of_a_perfect_denoiser_at_high_snr_is_small_and_of_a_blind_one_large() {
    let dev = Device::Cpu;
    let time = TimeSpan {
        t0: 0.0,
        t1: 1.0,
        t_min: 0.0,
    };
    let levels = 17;
    let ndm = Ndm::new(vdm(-13.3, 5.0), Target::X0, None, time, 4)
        .unwrap()
        .with_decoder(Decoder::Discrete { levels });
    assert_eq!(ndm.decoder(), Decoder::Discrete { levels });
    // Data on the 17-level grid.
    let x: Vec<f32> = (0..64)
        .map(|i| -1.0 + 2.0 * ((i * 7) % levels) as f32 / 16.0)
        .collect();
    let x0 = Tensor::from_vec(x.clone(), (16, 4), &dev).unwrap();
    // An oracle x̂ that returns the data itself (it sees x through a closure over x0) has
    // L_diff = 0; what is left is L_rec (σ/α = e^{−6.65} ≪ the bin width: ≈ 0) and L_prior.
    struct Oracle(Tensor);
    impl difc::nn::Module for Oracle {
        fn forward(&self, _x: &Tensor, _t: &Tensor) -> difc::nn::Result<Tensor> {
            Ok(self.0.clone())
        }
        fn forward_eval(&self, _x: &Tensor, _t: &Tensor) -> difc::nn::Result<Tensor> {
            Ok(self.0.clone())
        }
        fn forward_with_time_tangent(
            &self,
            _x: &Tensor,
            _t: &Tensor,
        ) -> difc::nn::Result<(Tensor, Tensor)> {
            Ok((self.0.clone(), self.0.zeros_like()?))
        }
        fn vars(&self) -> Vec<(String, candle_core::Var)> {
            Vec::new()
        }
        fn weights(&self) -> Vec<(String, Tensor)> {
            Vec::new()
        }
        fn load_weights(&mut self, _t: &[(String, Tensor)]) -> difc::nn::Result<()> {
            Ok(())
        }
    }
    let oracle = Oracle(x0.clone());
    let nats = ndm.nelbo_per_dim(&Nets::score(&oracle), &x0, 3).unwrap();
    let mean = nats.iter().sum::<f64>() / nats.len() as f64;
    // L_prior per dim: ½(α_T² x² + σ_T² − 1 − log σ_T²) with α_T² = sigmoid(−5) ≈ 0.0067.
    let a2 = 1.0 / (1.0 + 5f64.exp());
    let s2 = 1.0 - a2;
    let x2 = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
    let prior = 0.5 * (a2 * x2 + s2 - 1.0 - s2.ln());
    assert!(
        (mean - prior).abs() < 1e-4,
        "bound {mean} vs prior term {prior}"
    );
    // A blind x̂ (always 0) pays L_diff: a finite bound well above the oracle's.
    let zero = Oracle(x0.zeros_like().unwrap());
    let blind = ndm.nelbo_per_dim(&Nets::score(&zero), &x0, 3).unwrap();
    let blind = blind.iter().sum::<f64>() / blind.len() as f64;
    assert!(
        blind.is_finite() && blind > mean + 1.0,
        "blind {blind} vs oracle {mean}"
    );
    // The Gaussian decoder on the same data gives a density bound, not this one.
    let gauss = Ndm::new(vdm(-13.3, 5.0), Target::X0, None, time, 4).unwrap();
    let g = gauss.nelbo_per_dim(&Nets::score(&oracle), &x0, 3).unwrap();
    let g = g.iter().sum::<f64>() / g.len() as f64;
    assert!(
        g < mean - 1.0,
        "a density bound at σ/α = 0.0013 is far below 0: {g}"
    );
}
