//! AdamW with decoupled weight decay (Loshchilov & Hutter), the update of
//! `torch.optim.AdamW` without amsgrad, written out so that its state (the two moment
//! estimates and the step count of every parameter) can be saved and restored: libtorch's
//! own optimizer, as `tch` wraps it, keeps that state out of reach, and a resumed run must
//! continue with exactly the moments it stopped with.

use std::collections::BTreeMap;

use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// One trainable tensor and its state.
struct Param {
    name: String,
    tensor: Tensor,
    group: usize,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    steps: i64,
}

/// AdamW over the trainable variables of a [`VarStore`], with one learning rate per
/// variable group (the store's groups: 0 for the method's parameters, 1 for the heads).
pub struct AdamW {
    params: Vec<Param>,
    /// Two flat buffers as large as the largest parameter, reused by every update for its
    /// intermediate values instead of fresh tensors.
    scratch: [Tensor; 2],
    lrs: Vec<f64>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    /// β = (0.9, 0.999), ε = 1e-8, as PyTorch; all groups start at learning rate `lr`.
    pub fn new(vs: &VarStore, lr: f64, weight_decay: f64) -> Self {
        let named = vs.variables();
        let vars = vs.variables_.lock().expect("var store lock");
        let mut params: Vec<Param> = vars
            .trainable_variables
            .iter()
            .map(|v| {
                let name = named
                    .iter()
                    .find(|(_, t)| t.data_ptr() == v.tensor.data_ptr())
                    .map(|(k, _)| k.clone())
                    .expect("every trainable variable is named in its store");
                Param {
                    name,
                    tensor: v.tensor.shallow_clone(),
                    group: v.group,
                    exp_avg: v.tensor.zeros_like(),
                    exp_avg_sq: v.tensor.zeros_like(),
                    steps: 0,
                }
            })
            .collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        let groups = params.iter().map(|p| p.group + 1).max().unwrap_or(1);
        let largest = params.iter().map(|p| p.tensor.numel()).max().unwrap_or(0) as i64;
        let scratch = [(); 2].map(|_| Tensor::empty([largest], (Kind::Float, vs.device())));
        Self { params, scratch, lrs: vec![lr; groups], beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay }
    }

    /// Sets the learning rate of variable group `group` (ignored if no variable is in it).
    pub fn set_lr_group(&mut self, group: usize, lr: f64) {
        if let Some(l) = self.lrs.get_mut(group) {
            *l = lr;
        }
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut g = p.tensor.grad();
            if g.defined() {
                let _ = g.detach_();
                let _ = g.zero_();
            }
        }
    }

    /// Scales the gradients so that their global L2 norm is at most `max`; returns the norm
    /// before clipping.
    pub fn clip_grad_norm(&mut self, max: f64) -> f64 {
        tch::no_grad(|| {
            let norms: Vec<Tensor> =
                self.params.iter().map(|p| p.tensor.grad()).filter(|g| g.defined()).map(|g| g.norm()).collect();
            if norms.is_empty() {
                return 0.0;
            }
            let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
            let coef = max / (total + 1e-6);
            if coef < 1.0 {
                for p in &self.params {
                    let mut g = p.tensor.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(coef);
                    }
                }
            }
            total
        })
    }

    /// One update of every parameter that has a gradient. The arithmetic is that of
    ///
    /// ```text
    /// p *= 1 - lr·wd;  m = m·β1 + g·(1 - β1);  v = v·β2 + g·(g·(1 - β2))
    /// p += (m·(-lr / (1 - β1^t))) / (√v / √(1 - β2^t) + ε)
    /// ```
    ///
    /// operation by operation (so the same bits on every run), with the intermediate values
    /// written into the two scratch buffers.
    pub fn step(&mut self) {
        let (b1, b2, eps, wd) = (self.beta1, self.beta2, self.eps, self.weight_decay);
        tch::no_grad(|| {
            for p in &mut self.params {
                let g = p.tensor.grad();
                if !g.defined() {
                    continue;
                }
                let lr = self.lrs[p.group];
                p.steps += 1;
                let bias1 = 1.0 - b1.powi(p.steps as i32);
                let bias2 = 1.0 - b2.powi(p.steps as i32);
                let [a, b] =
                    self.scratch.each_ref().map(|s| s.narrow(0, 0, p.tensor.numel() as i64).view_as(&p.tensor));
                let scaled = |t: &Tensor, c: f64| t.mul_scalar_out(&a, c);
                let _ = p.tensor.g_mul_scalar_(1.0 - lr * wd);
                let _ = p.exp_avg.g_mul_scalar_(b1);
                let _ = p.exp_avg.g_add_(&scaled(&g, 1.0 - b1));
                let _ = p.exp_avg_sq.g_mul_scalar_(b2);
                let _ = p.exp_avg_sq.addcmul_(&g, &scaled(&g, 1.0 - b2));
                let mut denom = p.exp_avg_sq.sqrt_out(&b);
                let _ = denom.g_div_scalar_(bias2.sqrt());
                let _ = denom.g_add_scalar_(eps);
                let _ = p.tensor.addcdiv_(&scaled(&p.exp_avg, -lr / bias1), &denom);
            }
        })
    }

    /// The state as named tensors (`adam_m/NAME`, `adam_v/NAME`) and step counts by name.
    pub fn state(&self) -> (Vec<(String, Tensor)>, BTreeMap<String, i64>) {
        let mut tensors = Vec::new();
        let mut steps = BTreeMap::new();
        for p in &self.params {
            tensors.push((format!("adam_m/{}", p.name), p.exp_avg.shallow_clone()));
            tensors.push((format!("adam_v/{}", p.name), p.exp_avg_sq.shallow_clone()));
            steps.insert(p.name.clone(), p.steps);
        }
        (tensors, steps)
    }

    /// Restores a state saved by [`AdamW::state`]; `what` names the file for errors.
    pub fn load_state(
        &mut self,
        tensors: &BTreeMap<String, Tensor>,
        steps: &BTreeMap<String, i64>,
        what: &str,
    ) -> Result<()> {
        tch::no_grad(|| {
            for p in &mut self.params {
                for (key, dst) in [("adam_m", &mut p.exp_avg), ("adam_v", &mut p.exp_avg_sq)] {
                    let name = format!("{key}/{}", p.name);
                    let src = tensors
                        .get(&name)
                        .ok_or_else(|| Error::Input(format!("{what}: no optimizer tensor \"{name}\"")))?;
                    if src.size() != dst.size() {
                        return Err(Error::Input(format!(
                            "{what}: optimizer tensor \"{name}\" has shape {:?}, expected {:?}",
                            src.size(),
                            dst.size()
                        )));
                    }
                    dst.copy_(&src.to_kind(Kind::Float));
                }
                p.steps = *steps
                    .get(&p.name)
                    .ok_or_else(|| Error::Input(format!("{what}: no optimizer step count for \"{}\"", p.name)))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;
    use tch::Device;

    /// Two groups of parameters pulled towards targets, with weight decay and clipping.
    fn problem() -> (VarStore, Tensor, Tensor) {
        sized_problem(5, 3)
    }

    /// `a` is `rows × cols`.
    fn sized_problem(rows: i64, cols: i64) -> (VarStore, Tensor, Tensor) {
        // Fixed values (no draws from the process-wide generator, which other tests reseed).
        let wave = |n: i64, f: f64| (Tensor::arange(n, (Kind::Float, Device::Cpu)) * f).sin() * 2.0;
        let vs = VarStore::new(Device::Cpu);
        let _a = vs.root().var_copy("a", &wave(rows * cols, 0.7).view([rows, cols]));
        let _b = vs.root().set_group(1).var_copy("b", &wave(4, 1.3));
        (vs, wave(rows * cols, 0.3).view([rows, cols]), wave(4, 0.5))
    }

    /// Fresh gradients of [`loss`], clipped to norm 1.
    fn clipped_gradients(opt: &mut AdamW, vs: &VarStore, ta: &Tensor, tb: &Tensor) {
        opt.zero_grad();
        loss(vs, ta, tb).backward();
        opt.clip_grad_norm(1.0);
    }

    fn loss(vs: &VarStore, ta: &Tensor, tb: &Tensor) -> Tensor {
        let v = vs.variables();
        (&v["a"] - ta).pow_tensor_scalar(2).sum(Kind::Float) + (&v["b"] - tb).pow_tensor_scalar(4).sum(Kind::Float)
    }

    #[test]
    fn matches_libtorch_adamw() {
        let (vs1, ta, tb) = problem();
        let (vs2, _, _) = problem();
        let mut ours = AdamW::new(&vs1, 0.1, 0.01);
        let mut theirs = tch::nn::AdamW { wd: 0.01, ..Default::default() }.build(&vs2, 0.1).unwrap();
        for step in 0..30 {
            let lr = 0.1 / (1.0 + step as f64);
            ours.set_lr_group(0, lr);
            ours.set_lr_group(1, 2.0 * lr);
            theirs.set_lr_group(0, lr);
            theirs.set_lr_group(1, 2.0 * lr);
            ours.zero_grad();
            loss(&vs1, &ta, &tb).backward();
            ours.clip_grad_norm(1.0);
            ours.step();
            theirs.zero_grad();
            loss(&vs2, &ta, &tb).backward();
            theirs.clip_grad_norm(1.0);
            theirs.step();
        }
        let (v1, v2) = (vs1.variables(), vs2.variables());
        for k in ["a", "b"] {
            let d = (&v1[k] - &v2[k]).abs().max().double_value(&[]);
            assert!(d < 1e-5, "{k}: ours and libtorch's AdamW differ by {d}");
            assert!((&v1[k] - &v1[k].zeros_like()).abs().max().double_value(&[]) > 0.0);
        }
    }

    /// The update written out with a fresh tensor for every intermediate value, as the
    /// benchmark's committed cells were computed: the scratch buffers must not change a bit.
    #[test]
    fn scratch_buffers_change_no_bit() {
        // Large enough for the vectorised kernels, with a remainder for their scalar tails.
        let (vs1, ta, tb) = sized_problem(33, 47);
        let (vs2, _, _) = sized_problem(33, 47);
        let mut ours = AdamW::new(&vs1, 0.1, 0.01);
        let mut reference = AdamW::new(&vs2, 0.1, 0.01);
        let (b1, b2, eps, wd) = (reference.beta1, reference.beta2, reference.eps, reference.weight_decay);
        for step in 1..=20 {
            for opt in [&mut ours, &mut reference] {
                opt.set_lr_group(0, 0.1 / step as f64);
            }
            clipped_gradients(&mut ours, &vs1, &ta, &tb);
            ours.step();
            clipped_gradients(&mut reference, &vs2, &ta, &tb);
            tch::no_grad(|| {
                for p in &mut reference.params {
                    let g = p.tensor.grad();
                    let lr = reference.lrs[p.group];
                    let (bias1, bias2) = (1.0 - b1.powi(step), 1.0 - b2.powi(step));
                    let _ = p.tensor.g_mul_scalar_(1.0 - lr * wd);
                    let _ = p.exp_avg.g_mul_scalar_(b1);
                    let _ = p.exp_avg.g_add_(&(&g * (1.0 - b1)));
                    let _ = p.exp_avg_sq.g_mul_scalar_(b2);
                    let _ = p.exp_avg_sq.addcmul_(&g, &(&g * (1.0 - b2)));
                    let denom = p.exp_avg_sq.sqrt() / bias2.sqrt() + eps;
                    let _ = p.tensor.addcdiv_(&(&p.exp_avg * (-lr / bias1)), &denom);
                }
            });
        }
        let (v1, v2) = (vs1.variables(), vs2.variables());
        for k in ["a", "b"] {
            assert!(v1[k].equal(&v2[k]), "{k}: the scratch-buffer update differs from the written-out one");
        }
        let (s1, _) = ours.state();
        let (s2, _) = reference.state();
        for ((k, t1), (_, t2)) in s1.iter().zip(&s2) {
            assert!(t1.equal(t2), "{k}");
        }
    }

    #[test]
    fn state_round_trips() {
        let (vs, ta, tb) = problem();
        let mut opt = AdamW::new(&vs, 0.1, 0.01);
        for _ in 0..3 {
            opt.zero_grad();
            loss(&vs, &ta, &tb).backward();
            opt.step();
        }
        let (tensors, steps) = opt.state();
        assert_eq!(steps.values().copied().collect::<Vec<_>>(), vec![3, 3]);
        let (vs2, _, _) = problem();
        let mut opt2 = AdamW::new(&vs2, 0.1, 0.01);
        let map: BTreeMap<String, Tensor> = tensors.into_iter().collect();
        opt2.load_state(&map, &steps, "test").unwrap();
        let (t2, s2) = opt2.state();
        assert_eq!(s2, steps);
        for (k, t) in t2 {
            assert_eq!((&map[&k] - &t).abs().max().double_value(&[]), 0.0, "{k}");
        }
        let mut missing: BTreeMap<String, Tensor> = map.iter().map(|(k, t)| (k.clone(), t.shallow_clone())).collect();
        missing.remove("adam_m/a");
        assert!(opt2.load_state(&missing, &steps, "f.safetensors").unwrap_err().to_string().contains("adam_m/a"));
    }
}
