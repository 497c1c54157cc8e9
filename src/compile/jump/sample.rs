//! Simulation-free samplers for the Laplace jump-diffusion.
//!
//! Increment Δ_t = x_t − x_0 e^{−θt/2} = (Gaussian part) + J(t), J(t) = Σ_{j≤N} A_j e^{−θ(t−u_j)/2},
//! N ~ Poisson(λt), u_j ~ U(0, t), A_j ~ Laplace(shape 1, variance σ²).
//!
//! *Mixture sampler* (λ/θ = m integer). The jump part has characteristic function
//! [(1 + b|k|²E)/(1 + b|k|²)]^m = [E + (1 − E)(1 + b|k|²)^{−1}]^m, E = e^{−θt}, b = σ²/2, and the
//! binomial theorem gives Σ_j C(m,j) E^{m−j}(1−E)^j (1 + b|k|²)^{−j}: draw j ~ Binomial(m, 1 − E),
//! then one Laplace amplitude of shape j (shape 0 = the atom at 0, probability E^m = e^{−λt}).
//!
//! *Poisson sampler* (any λ): the compound-Poisson sum above, term by term.
//!
//! The Gaussian part is N(0, gvar(1 − E)/θ · I). The stationary law (the sampler's prior) is
//! Laplace(shape λ/θ, σ²) ⊕ N(0, gvar/θ · I).
//!
//! *Time-varying rate* λ(t) ([`RateProfile`]): N ~ Poisson(Λ_t), Λ_t = ∫_0^t λ, the jump times
//! drawn with density λ(s)/Λ_t on (0, t) by inverting Λ, each amplitude damped by e^{−θ(t−s)/2}
//! as for a constant rate. There is no stationary law: the prior is the increment over the
//! whole horizon [0, T] (the data's trace e^{−θT/2} x_0 is dropped, as it is for the constant
//! rate's stationary prior).

use rand::Rng;
use rand_distr::{Binomial, Distribution, Gamma, Poisson, StandardNormal};

use super::{integer_ratio, invalid, JumpError, JumpLaw, JumpParams, RateProfile};

/// What happened in one sampled increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Increment {
    /// Whether at least one jump occurred. In the pure-jump model `false` means Δ = 0 exactly,
    /// and such samples must stay in the regression with target 0.
    pub jumped: bool,
}

/// Samplers for one forward process.
#[derive(Debug, Clone)]
pub struct JumpSampler {
    params: JumpParams,
    /// m = λ/θ when it is a positive integer (enables the mixture sampler).
    m: Option<u32>,
    /// A time-varying rate; `None`: the constant `params.lambda`.
    varying: Option<RateProfile>,
}

impl JumpSampler {
    /// Validates the parameters.
    pub fn new(params: JumpParams) -> Result<Self, JumpError> {
        params.validate()?;
        Ok(Self {
            params,
            // The binomial mixture is a property of Laplace amplitudes.
            m: match params.law {
                JumpLaw::Laplace => integer_ratio(params.shape_ratio()),
                JumpLaw::Gaussian => None,
            },
            varying: None,
        })
    }

    /// A sampler whose jump rate is λ(t) of `rate` instead of a constant. `params.lambda` is
    /// replaced by the peak rate (it then only describes the process).
    pub fn with_rate(params: JumpParams, rate: RateProfile) -> Result<Self, JumpError> {
        let params = JumpParams {
            lambda: rate.max_rate(),
            ..params
        };
        params.validate()?;
        Ok(Self {
            params,
            m: None,
            varying: Some(rate),
        })
    }

    /// The process parameters.
    pub fn params(&self) -> &JumpParams {
        &self.params
    }

    /// The time-varying rate, if the rate is not constant.
    pub fn varying_rate(&self) -> Option<&RateProfile> {
        self.varying.as_ref()
    }

    /// λ(t).
    pub fn rate_at(&self, t: f64) -> f64 {
        match &self.varying {
            Some(r) => r.rate(t),
            None => self.params.lambda,
        }
    }

    /// Λ_t = ∫_0^t λ(s) ds, the expected number of jumps on (0, t).
    pub fn cumulative_rate(&self, t: f64) -> f64 {
        match &self.varying {
            Some(r) => r.cumulative(t),
            None => self.params.lambda * t,
        }
    }

    /// Samples Δ_t into `out` (length D), with the mixture sampler when λ/θ is an integer and the
    /// Poisson sampler otherwise.
    pub fn increment<R: Rng + ?Sized>(
        &self,
        t: f64,
        rng: &mut R,
        out: &mut [f64],
    ) -> Result<Increment, JumpError> {
        match self.m {
            Some(_) => self.increment_mixture(t, rng, out),
            None => self.increment_poisson(t, rng, out),
        }
    }

    /// Exact binomial-mixture sampler; needs λ/θ to be a positive integer.
    pub fn increment_mixture<R: Rng + ?Sized>(
        &self,
        t: f64,
        rng: &mut R,
        out: &mut [f64],
    ) -> Result<Increment, JumpError> {
        self.check(t, out)?;
        let ratio = self.params.shape_ratio();
        let m = self.m.ok_or(JumpError::NonIntegerRateRatio { ratio })?;
        let p_active = -(-self.params.theta * t).exp_m1();
        let j = Binomial::new(m as u64, p_active.clamp(0.0, 1.0))
            .map_err(|_| invalid("t", t, "gives an invalid binomial probability"))?
            .sample(rng);
        laplace_into(rng, j as f64, self.params.sigma2, out)?;
        self.add_forward_gaussian(t, rng, out);
        Ok(Increment { jumped: j > 0 })
    }

    /// Compound-Poisson sampler; valid for any λ.
    pub fn increment_poisson<R: Rng + ?Sized>(
        &self,
        t: f64,
        rng: &mut R,
        out: &mut [f64],
    ) -> Result<Increment, JumpError> {
        self.check(t, out)?;
        out.fill(0.0);
        let theta = self.params.theta;
        // Each jump at time u is damped by e^{−θ(t−u)/2} by the end of the interval.
        let n = match &self.varying {
            None => self.add_jumps(t, rng, out, |u| (-0.5 * theta * (t - u)).exp())?,
            Some(rate) => {
                self.check_horizon(rate, t)?;
                self.add_jumps_between(rate, 0.0, t, rng, out, |s| (-0.5 * theta * (t - s)).exp())?
            }
        };
        self.add_forward_gaussian(t, rng, out);
        Ok(Increment { jumped: n > 0 })
    }

    /// Samples the stationary law Laplace(shape λ/θ, σ²) ⊕ N(0, gvar/θ · I), the reverse
    /// samplers' starting point.
    pub fn prior<R: Rng + ?Sized>(&self, rng: &mut R, out: &mut [f64]) -> Result<(), JumpError> {
        self.check(0.0, out)?;
        if let Some(rate) = &self.varying {
            // No stationary law: the increment over the whole horizon.
            self.increment_poisson(rate.horizon(), rng, out)?;
            return Ok(());
        }
        if self.params.law == JumpLaw::Gaussian {
            // No closed-form stationary law: the increment over a span long enough that the
            // data's trace e^{−θt/2} and the start-up of the jump sum are below 1e−9.
            let t = 2.0 * 9.0 * std::f64::consts::LN_10 / self.params.theta;
            self.increment_poisson(t, rng, out)?;
            return Ok(());
        }
        laplace_into(rng, self.params.shape_ratio(), self.params.sigma2, out)?;
        add_gaussian(rng, (self.params.gvar / self.params.theta).sqrt(), out);
        Ok(())
    }

    /// Noise added by one exponential-integrator step of length h of the generative SDE (reverse
    /// time): jumps N ~ Poisson(λh) at u_j ~ U(0, h) amplified by e^{θ(h−u_j)/2}, plus
    /// N(0, gvar(e^{θh} − 1)/θ · I). See [`super::sde_step_coeffs`].
    pub fn reverse_noise<R: Rng + ?Sized>(
        &self,
        h: f64,
        rng: &mut R,
        out: &mut [f64],
    ) -> Result<Increment, JumpError> {
        self.check(h, out)?;
        out.fill(0.0);
        let theta = self.params.theta;
        let n = self.add_jumps(h, rng, out, |u| (0.5 * theta * (h - u)).exp())?;
        let (_, _, v) = super::sde_step_coeffs(theta, h);
        add_gaussian(rng, (self.params.gvar * v).sqrt(), out);
        Ok(Increment { jumped: n > 0 })
    }

    /// The noise of one reverse-SDE step from forward time t to t − h: with a constant rate
    /// [`Self::reverse_noise`]; with λ(t) the jumps of (t − h, t), N ~ Poisson(Λ_t − Λ_{t−h}),
    /// a jump at forward time s amplified by e^{θ(s − (t − h))/2} (it happens h − (t − s) before
    /// the step's end in reverse time), plus the same Gaussian part.
    pub fn reverse_noise_at<R: Rng + ?Sized>(
        &self,
        t: f64,
        h: f64,
        rng: &mut R,
        out: &mut [f64],
    ) -> Result<Increment, JumpError> {
        let Some(rate) = &self.varying else {
            return self.reverse_noise(h, rng, out);
        };
        self.check(h, out)?;
        self.check_horizon(rate, t)?;
        out.fill(0.0);
        let theta = self.params.theta;
        let start = (t - h).max(0.0);
        let n = self.add_jumps_between(rate, start, t, rng, out, |s| {
            (0.5 * theta * (s - start)).exp()
        })?;
        let (_, _, v) = super::sde_step_coeffs(theta, h);
        add_gaussian(rng, (self.params.gvar * v).sqrt(), out);
        Ok(Increment { jumped: n > 0 })
    }

    fn check_horizon(&self, rate: &RateProfile, t: f64) -> Result<(), JumpError> {
        // The rate is only known on [0, T]; allow rounding at the end.
        if t > rate.horizon() * (1.0 + 1e-9) {
            return Err(invalid(
                "t",
                t,
                "is past the horizon on which the jump rate is defined",
            ));
        }
        Ok(())
    }

    /// Adds N ~ Poisson(Λ_b − Λ_a) jumps at times s ∈ (a, b) of density λ(s)/(Λ_b − Λ_a),
    /// each scaled by `factor(s)`; returns N.
    fn add_jumps_between<R: Rng + ?Sized>(
        &self,
        rate: &RateProfile,
        a: f64,
        b: f64,
        rng: &mut R,
        out: &mut [f64],
        factor: impl Fn(f64) -> f64,
    ) -> Result<u64, JumpError> {
        let (la, lb) = (rate.cumulative(a), rate.cumulative(b));
        let n = poisson(lb - la, rng)?;
        let mut amp = vec![0.0; out.len()];
        for _ in 0..n {
            let s = rate
                .inverse(la + (lb - la) * rng.random::<f64>())
                .clamp(a, b);
            self.amplitude(rng, &mut amp)?;
            let f = factor(s);
            for (o, x) in out.iter_mut().zip(&amp) {
                *o += f * x;
            }
        }
        Ok(n)
    }

    /// One jump amplitude A into `amp`.
    fn amplitude<R: Rng + ?Sized>(&self, rng: &mut R, amp: &mut [f64]) -> Result<(), JumpError> {
        match self.params.law {
            JumpLaw::Laplace => laplace_into(rng, 1.0, self.params.sigma2, amp),
            JumpLaw::Gaussian => {
                amp.fill(0.0);
                add_gaussian(rng, self.params.sigma2.sqrt(), amp);
                Ok(())
            }
        }
    }

    fn check(&self, t: f64, out: &[f64]) -> Result<(), JumpError> {
        if !(t.is_finite() && t >= 0.0) {
            return Err(invalid("t", t, "must be finite and >= 0"));
        }
        if out.len() != self.params.dim {
            return Err(JumpError::LengthMismatch {
                what: "out",
                got: out.len(),
                expected: self.params.dim,
            });
        }
        Ok(())
    }

    /// Adds N ~ Poisson(λ·span) Laplace jumps at uniform times u ∈ (0, span), each scaled by
    /// `factor(u)`; returns N.
    fn add_jumps<R: Rng + ?Sized>(
        &self,
        span: f64,
        rng: &mut R,
        out: &mut [f64],
        factor: impl Fn(f64) -> f64,
    ) -> Result<u64, JumpError> {
        let mean = self.params.lambda * span;
        if mean <= 0.0 {
            return Ok(0);
        }
        let n = Poisson::new(mean)
            .map_err(|_| {
                invalid(
                    "rate",
                    self.params.lambda,
                    "gives a Poisson mean too large to sample",
                )
            })?
            .sample(rng) as u64;
        let mut amp = vec![0.0; out.len()];
        for _ in 0..n {
            let u = span * rng.random::<f64>();
            self.amplitude(rng, &mut amp)?;
            let f = factor(u);
            for (o, a) in out.iter_mut().zip(&amp) {
                *o += f * a;
            }
        }
        Ok(n)
    }

    fn add_forward_gaussian<R: Rng + ?Sized>(&self, t: f64, rng: &mut R, out: &mut [f64]) {
        let p = &self.params;
        if p.gvar > 0.0 {
            let var = p.gvar * -(-p.theta * t).exp_m1() / p.theta;
            add_gaussian(rng, var.sqrt(), out);
        }
    }
}

/// N ~ Poisson(mean); 0 for a mean ≤ 0.
fn poisson<R: Rng + ?Sized>(mean: f64, rng: &mut R) -> Result<u64, JumpError> {
    if mean <= 0.0 {
        return Ok(0);
    }
    Ok(Poisson::new(mean)
        .map_err(|_| invalid("rate", mean, "gives a Poisson mean too large to sample"))?
        .sample(rng) as u64)
}

/// Writes one isotropic Laplace vector √(σ²Z)·G, Z ~ Gamma(shape, 1), G ~ N(0, I), into `out`.
/// Shape 0 is the point mass at 0.
pub fn laplace_into<R: Rng + ?Sized>(
    rng: &mut R,
    shape: f64,
    sigma2: f64,
    out: &mut [f64],
) -> Result<(), JumpError> {
    if shape == 0.0 {
        out.fill(0.0);
        return Ok(());
    }
    let z: f64 = Gamma::new(shape, 1.0)
        .map_err(|_| invalid("shape", shape, "must be finite and >= 0"))?
        .sample(rng);
    let scale = (sigma2 * z).sqrt();
    for o in out.iter_mut() {
        let g: f64 = rng.sample(StandardNormal);
        *o = scale * g;
    }
    Ok(())
}

fn add_gaussian<R: Rng + ?Sized>(rng: &mut R, std: f64, out: &mut [f64]) {
    if std > 0.0 {
        for o in out.iter_mut() {
            let g: f64 = rng.sample(StandardNormal);
            *o += std * g;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream, Purpose};

    const N: usize = 100_000;

    /// Pooled per-coordinate sample moments and their standard errors: (m1, m2, m4, se1, se2, se4).
    fn moments(xs: &[f64]) -> [f64; 6] {
        let n = xs.len() as f64;
        let mean = |f: &dyn Fn(f64) -> f64| xs.iter().map(|&x| f(x)).sum::<f64>() / n;
        let se = |f: &dyn Fn(f64) -> f64, mu: f64| {
            (xs.iter().map(|&x| (f(x) - mu).powi(2)).sum::<f64>() / n / n).sqrt()
        };
        let (m1, m2, m4) = (mean(&|x| x), mean(&|x| x * x), mean(&|x| x.powi(4)));
        [
            m1,
            m2,
            m4,
            se(&|x| x, m1),
            se(&|x| x * x, m2),
            se(&|x| x.powi(4), m4),
        ]
    }

    /// Asserts mean 0, variance κ2 and fourth moment κ4 + 3κ2² within 5 (doubled for the
    /// correlated coordinates) standard errors.
    fn assert_moments(xs: &[f64], k2: f64, k4: f64, what: &str) {
        let [m1, m2, m4, s1, s2, s4] = moments(xs);
        let tol = 5.0 * std::f64::consts::SQRT_2;
        assert!(m1.abs() < tol * s1, "{what}: mean {m1} (se {s1})");
        assert!(
            (m2 - k2).abs() < tol * s2,
            "{what}: m2 {m2} vs {k2} (se {s2})"
        );
        let want4 = k4 + 3.0 * k2 * k2;
        assert!(
            (m4 - want4).abs() < tol * s4,
            "{what}: m4 {m4} vs {want4} (se {s4})"
        );
    }

    fn draw(s: &JumpSampler, t: f64, mixture: bool, seed: u64) -> (Vec<f64>, usize) {
        let d = s.params().dim;
        let mut rng = stream(seed, Purpose::Test, 0, 0);
        let mut all = vec![0.0; N * d];
        let mut no_jump = 0;
        for row in all.chunks_exact_mut(d) {
            let inc = if mixture {
                s.increment_mixture(t, &mut rng, row)
            } else {
                s.increment_poisson(t, &mut rng, row)
            };
            if !inc.unwrap().jumped {
                no_jump += 1;
            }
        }
        (all, no_jump)
    }

    #[test]
    fn gaussian_amplitude_increments_and_prior_match_characteristic_function_moments() {
        // ln Ĝ = λ∫_0^t (e^{−σ²k²e^{−θs}/2} − 1) ds − gvar k²(1−E)/(2θ). Per coordinate:
        // κ2 = λσ²(1−E)/θ + gvar(1−E)/θ, κ4 = λ·E[A⁴]·(1−E²)/(2θ) with E[A⁴] = 3σ⁴ (half the
        // Laplace value, so a sampler that drew Laplace amplitudes fails the κ4 check).
        let cases = [(1.0, 1.0, 1.0, 0.5, 0.7), (0.5, 2.0, 0.6, 0.0, 2.0)];
        for (i, &(theta, lambda, sigma2, gvar, t)) in cases.iter().enumerate() {
            let s = JumpSampler::new(JumpParams {
                law: JumpLaw::Gaussian,
                dim: 2,
                theta,
                lambda,
                sigma2,
                gvar,
            })
            .unwrap();
            assert!(s.m.is_none(), "no binomial mixture for Gaussian amplitudes");
            let e: f64 = (-theta * t).exp();
            let k2 = (lambda * sigma2 + gvar) * (1.0 - e) / theta;
            let k4 = 3.0 * lambda * sigma2 * sigma2 * (1.0 - e * e) / (2.0 * theta);
            let (xs, no_jump) = draw(&s, t, false, 40 + i as u64);
            assert_moments(&xs, k2, k4, &format!("gaussian case {i}"));
            let p_atom = (-lambda * t).exp();
            let frac = no_jump as f64 / N as f64;
            let se = (p_atom * (1.0 - p_atom) / N as f64).sqrt();
            assert!((frac - p_atom).abs() < 5.0 * se, "atom {frac} vs {p_atom}");
            // The prior is the stationary law: E → 0.
            let mut rng = stream(50 + i as u64, Purpose::Test, 0, 0);
            let mut prior = vec![0.0; N * 2];
            for row in prior.chunks_exact_mut(2) {
                s.prior(&mut rng, row).unwrap();
            }
            let k2 = (lambda * sigma2 + gvar) / theta;
            let k4 = 3.0 * lambda * sigma2 * sigma2 / (2.0 * theta);
            assert_moments(&prior, k2, k4, &format!("gaussian prior {i}"));
        }
    }

    #[test]
    fn increments_match_characteristic_function_moments() {
        // Cumulants per coordinate from ln Ĝ = m ln(1 + bk²E) − m ln(1 + bk²) − gvar k²(1−E)/(2θ):
        // κ2 = mσ²(1−E) + gvar(1−E)/θ, κ4 = 3mσ⁴(1−E²).
        let cases = [
            (2.0, 1.0, 2.0, 0.0, 0.7),
            (1.0, 1.5, 0.8, 0.5, 1.3),
            (0.5, 1.0, 1.0, 0.0, 3.0),
        ];
        for (i, &(theta, m, sigma2, gvar, t)) in cases.iter().enumerate() {
            let s = JumpSampler::new(JumpParams {
                law: JumpLaw::Laplace,
                dim: 2,
                theta,
                lambda: m * theta,
                sigma2,
                gvar,
            })
            .unwrap();
            let e: f64 = (-theta * t).exp();
            let k2 = m * sigma2 * (1.0 - e) + gvar * (1.0 - e) / theta;
            let k4 = 3.0 * m * sigma2 * sigma2 * (1.0 - e * e);
            let p_atom = (-m * theta * t).exp();
            let mut mixture_modes = vec![false];
            if s.m.is_some() {
                mixture_modes.push(true);
            }
            for mixture in mixture_modes {
                let (xs, no_jump) = draw(&s, t, mixture, 10 + i as u64);
                assert_moments(&xs, k2, k4, &format!("case {i} mixture={mixture}"));
                let frac = no_jump as f64 / N as f64;
                let se = (p_atom * (1.0 - p_atom) / N as f64).sqrt();
                assert!((frac - p_atom).abs() < 5.0 * se, "atom {frac} vs {p_atom}");
            }
        }
    }

    #[test]
    fn mixture_and_poisson_samplers_agree() {
        // Two-sample Kolmogorov–Smirnov on |Δ| (m = 2, D = 3); 0.1% critical value 1.95·√(2/N).
        let s = JumpSampler::new(JumpParams {
            law: JumpLaw::Laplace,
            dim: 3,
            theta: 1.0,
            lambda: 2.0,
            sigma2: 2.0,
            gvar: 0.0,
        })
        .unwrap();
        let radii = |xs: Vec<f64>| {
            let mut r: Vec<f64> = xs
                .chunks_exact(3)
                .map(|v| v.iter().map(|a| a * a).sum::<f64>().sqrt())
                .collect();
            r.sort_by(f64::total_cmp);
            r
        };
        let a = radii(draw(&s, 0.8, true, 1).0);
        let b = radii(draw(&s, 0.8, false, 2).0);
        let (mut i, mut j, mut ks) = (0, 0, 0.0_f64);
        while i < N && j < N {
            // Advance both samples past the smaller value, so ties (the atom at 0) count together.
            let v = a[i].min(b[j]);
            while i < N && a[i] <= v {
                i += 1;
            }
            while j < N && b[j] <= v {
                j += 1;
            }
            ks = ks.max((i as f64 - j as f64).abs() / N as f64);
        }
        assert!(ks < 1.95 * (2.0 / N as f64).sqrt(), "KS statistic {ks}");
    }

    #[test]
    fn prior_and_reverse_noise_moments() {
        // Prior: κ2 = mσ² + gvar/θ, κ4 = 3mσ⁴ (m = λ/θ = 1.5 here).
        let p = JumpParams {
            law: JumpLaw::Laplace,
            dim: 2,
            theta: 2.0,
            lambda: 3.0,
            sigma2: 0.6,
            gvar: 0.4,
        };
        let s = JumpSampler::new(p).unwrap();
        let mut rng = stream(3, Purpose::Test, 0, 0);
        let mut xs = vec![0.0; N * 2];
        for row in xs.chunks_exact_mut(2) {
            s.prior(&mut rng, row).unwrap();
        }
        assert_moments(&xs, 1.5 * 0.6 + 0.2, 3.0 * 1.5 * 0.36, "prior");
        // Reverse step h: κ2 = (λσ² + gvar)(e^{θh} − 1)/θ, κ4 = 3λσ⁴(e^{2θh} − 1)/θ.
        let h = 0.3;
        for row in xs.chunks_exact_mut(2) {
            s.reverse_noise(h, &mut rng, row).unwrap();
        }
        let g = (2.0 * h).exp_m1() / 2.0;
        let k4 = 3.0 * 3.0 * 0.36 * (4.0 * h).exp_m1() / 2.0;
        assert_moments(&xs, (3.0 * 0.6 + 0.4) * g, k4, "reverse noise");
    }

    #[test]
    fn laplace_moments_and_errors() {
        // Shape s, variance σ²: E A_i² = sσ², E A_i⁴ = 3σ⁴ s(s+1) ⇒ κ4 = 3σ⁴ s.
        let mut rng = stream(4, Purpose::Test, 0, 0);
        let mut xs = vec![0.0; N * 2];
        for row in xs.chunks_exact_mut(2) {
            laplace_into(&mut rng, 2.5, 0.5, row).unwrap();
        }
        assert_moments(&xs, 1.25, 3.0 * 0.25 * 2.5, "laplace");
        let s = JumpSampler::new(JumpParams {
            law: JumpLaw::Laplace,
            dim: 2,
            theta: 1.0,
            lambda: 0.5,
            sigma2: 1.0,
            gvar: 0.0,
        })
        .unwrap();
        let mut out = [0.0; 2];
        assert!(matches!(
            s.increment_mixture(1.0, &mut rng, &mut out),
            Err(JumpError::NonIntegerRateRatio { .. })
        ));
        assert!(s.increment(-1.0, &mut rng, &mut out).is_err());
        assert!(s.increment(1.0, &mut rng, &mut [0.0; 3]).is_err());
    }
}
