//! AdamW with decoupled weight decay (Loshchilov & Hutter), the update of
//! `torch.optim.AdamW` without amsgrad, written out so that its state (the two moment
//! estimates and the step count of every parameter) can be saved and restored: libtorch's
//! own optimizer, as `tch` wraps it, keeps that state out of reach, and a resumed run must
//! continue with exactly the moments it stopped with.
//!
//! Two layouts, the same arithmetic. **Per parameter** (the default on the CPU): zeroing,
//! clipping and the update run parameter by parameter. **Multi-tensor** (the default on a
//! GPU): at the first update, each variable group's parameters that have a gradient become
//! views of one flat buffer, as do their gradients and moments, so that zeroing, clipping
//! and the update are a dozen kernels per group instead of a dozen per parameter; full
//! fine-tuning has about two hundred parameters at base size, and on a GPU their kernel
//! launches, not their arithmetic, were the update's cost. The update's elementwise
//! operations are the same in both layouts, so they give the same bits; only clipping
//! differs, summing the squared gradients in another order (results agree to rounding).
//! A parameter without a gradient at the first update, or a length-0 one, stays outside
//! the flat buffers and is updated on its own whenever it has a gradient. Backward then
//! accumulates into the flat gradient buffers in place, and nothing here replaces a
//! gradient, so the members' gradients stay views of them; every update checks that.

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
    /// A view of its group's flat buffers, worked on with them (multi-tensor layout).
    in_flat: bool,
}

/// One variable group in the multi-tensor layout: its members (indices into
/// `AdamW::params`, in order) are views of these flat buffers, their gradients views of
/// `grad`, at consecutive offsets.
struct Flat {
    group: usize,
    members: Vec<usize>,
    tensor: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW over the trainable variables of a [`VarStore`], with one learning rate per
/// variable group (the store's groups: 0 for the method's parameters, 1 for the heads).
pub struct AdamW {
    params: Vec<Param>,
    /// Whether the multi-tensor layout is wanted (see the module's documentation).
    multi_tensor: bool,
    /// The multi-tensor layout, once made (at the first clipping or update).
    flats: Option<Vec<Flat>>,
    /// Two flat buffers as large as the largest tensor updated at once, reused by every
    /// update for its intermediate values instead of fresh tensors.
    scratch: [Tensor; 2],
    lrs: Vec<f64>,
    hyper: Hyper,
}

/// One update of `p` from its gradient `g` and moments `m`, `v` (all the same shape) at
/// learning rate `lr`, step `t` (1-based): the arithmetic of
///
/// ```text
/// p *= 1 - lr·wd;  m = m·β1 + g·(1 - β1);  v = v·β2 + g·(g·(1 - β2))
/// p += (m·(-lr / (1 - β1^t))) / (√v / √(1 - β2^t) + ε)
/// ```
///
/// operation by operation (so the same bits on every run), with the intermediate values
/// written into views of the two scratch buffers.
#[allow(clippy::too_many_arguments)]
fn update(
    p: &mut Tensor,
    g: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    lr: f64,
    t: i64,
    opt: &Hyper,
    scratch: &[Tensor; 2],
) {
    let Hyper { beta1: b1, beta2: b2, eps, weight_decay: wd } = *opt;
    let bias1 = 1.0 - b1.powi(t as i32);
    let bias2 = 1.0 - b2.powi(t as i32);
    let [a, b] = scratch.each_ref().map(|s| s.narrow(0, 0, p.numel() as i64).view_as(p));
    let scaled = |t: &Tensor, c: f64| t.mul_scalar_out(&a, c);
    let _ = p.g_mul_scalar_(1.0 - lr * wd);
    let _ = m.g_mul_scalar_(b1);
    let _ = m.g_add_(&scaled(g, 1.0 - b1));
    let _ = v.g_mul_scalar_(b2);
    let _ = v.addcmul_(g, &scaled(g, 1.0 - b2));
    let mut denom = v.sqrt_out(&b);
    let _ = denom.g_div_scalar_(bias2.sqrt());
    let _ = denom.g_add_scalar_(eps);
    let _ = p.addcdiv_(&scaled(m, -lr / bias1), &denom);
}

/// AdamW's constants.
#[derive(Clone, Copy)]
struct Hyper {
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
}

impl AdamW {
    /// β = (0.9, 0.999), ε = 1e-8, as PyTorch; all groups start at learning rate `lr`.
    /// Multi-tensor on a GPU, per parameter on the CPU (see [`AdamW::multi_tensor`]).
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
                    in_flat: false,
                }
            })
            .collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        let groups = params.iter().map(|p| p.group + 1).max().unwrap_or(1);
        let largest = params.iter().map(|p| p.tensor.numel()).max().unwrap_or(0) as i64;
        let scratch = [(); 2].map(|_| Tensor::empty([largest], (Kind::Float, vs.device())));
        Self {
            params,
            multi_tensor: vs.device().is_cuda(),
            flats: None,
            scratch,
            lrs: vec![lr; groups],
            hyper: Hyper { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay },
        }
    }

    /// Chooses the layout: multi-tensor (`true`) or per parameter. Call it before the first
    /// update; [`AdamW::new`] chooses multi-tensor on a GPU only.
    pub fn multi_tensor(mut self, on: bool) -> Self {
        assert!(self.flats.is_none(), "the layout is chosen before the first update");
        self.multi_tensor = on;
        self
    }

    /// Sets the learning rate of variable group `group` (ignored if no variable is in it).
    pub fn set_lr_group(&mut self, group: usize, lr: f64) {
        if let Some(l) = self.lrs.get_mut(group) {
            *l = lr;
        }
    }

    /// Makes the multi-tensor layout, if it is wanted and not yet made: per group, the
    /// parameters with a gradient and as many steps as the group's first such one are
    /// gathered into flat buffers (values unchanged) and become views of them.
    fn flatten(&mut self) {
        if !self.multi_tensor || self.flats.is_some() {
            return;
        }
        let mut flats = Vec::new();
        tch::no_grad(|| {
            for group in 0..self.lrs.len() {
                let with_grad = |p: &Param| p.group == group && p.tensor.numel() > 0 && p.tensor.grad().defined();
                let Some(first) = self.params.iter().find(|p| with_grad(p)).map(|p| p.steps) else { continue };
                let members: Vec<usize> = (0..self.params.len())
                    .filter(|&i| with_grad(&self.params[i]) && self.params[i].steps == first)
                    .collect();
                let gather = |get: &dyn Fn(&Param) -> Tensor| {
                    Tensor::cat(&members.iter().map(|&i| get(&self.params[i]).detach().view(-1)).collect::<Vec<_>>(), 0)
                };
                let flat = Flat {
                    group,
                    tensor: gather(&|p| p.tensor.shallow_clone()),
                    grad: gather(&|p| p.tensor.grad()),
                    exp_avg: gather(&|p| p.exp_avg.shallow_clone()),
                    exp_avg_sq: gather(&|p| p.exp_avg_sq.shallow_clone()),
                    members,
                };
                let mut offset = 0;
                for &i in &flat.members {
                    let p = &mut self.params[i];
                    let n = p.tensor.numel() as i64;
                    let view = |t: &Tensor| t.narrow(0, offset, n).view_as(&p.tensor);
                    p.exp_avg = view(&flat.exp_avg);
                    p.exp_avg_sq = view(&flat.exp_avg_sq);
                    p.tensor.grad().set_data(&view(&flat.grad));
                    let data = view(&flat.tensor);
                    p.tensor.set_data(&data);
                    p.in_flat = true;
                    offset += n;
                }
                flats.push(flat);
            }
        });
        let largest = flats.iter().map(|f| f.tensor.numel()).max().unwrap_or(0) as i64;
        if largest > self.scratch[0].numel() as i64 {
            let device = self.scratch[0].device();
            self.scratch = [(); 2].map(|_| Tensor::empty([largest], (Kind::Float, device)));
        }
        self.flats = Some(flats);
    }

    /// Panics unless every flat group's members still have their gradients as views of the
    /// group's buffer and have taken the same number of steps (see the module's
    /// documentation): an update of the buffers would otherwise miss a gradient.
    fn assert_bound(&self) {
        for f in self.flats.iter().flatten() {
            let (base, steps) = (f.grad.data_ptr() as usize, self.params[f.members[0]].steps);
            let mut offset = 0;
            for &i in &f.members {
                let p = &self.params[i];
                let g = p.tensor.grad();
                assert!(
                    p.steps == steps && g.defined() && g.data_ptr() as usize == base + offset,
                    "AdamW: the gradient or step count of \"{}\" left its multi-tensor group",
                    p.name
                );
                offset += p.tensor.numel() * p.tensor.kind().elt_size_in_bytes();
            }
        }
    }

    /// How many variable groups are worked on as one flat buffer (0 in the per-parameter
    /// layout, and before the first update).
    pub fn flat_groups(&self) -> usize {
        self.flats.as_ref().map_or(0, Vec::len)
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(&mut self) {
        for f in self.flats.iter_mut().flatten() {
            let _ = f.grad.zero_();
        }
        for p in self.params.iter_mut().filter(|p| !p.in_flat) {
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
        self.flatten();
        tch::no_grad(|| {
            let flat = self.flats.iter().flatten().map(|f| f.grad.shallow_clone());
            let single = self.params.iter().filter(|p| !p.in_flat).map(|p| p.tensor.grad()).filter(|g| g.defined());
            let grads: Vec<Tensor> = flat.chain(single).collect();
            if grads.is_empty() {
                return 0.0;
            }
            let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
            let total = Tensor::stack(&norms, 0).norm().double_value(&[]);
            let coef = max / (total + 1e-6);
            if coef < 1.0 {
                for mut g in grads {
                    let _ = g.g_mul_scalar_(coef);
                }
            }
            total
        })
    }

    /// One update of every parameter that has a gradient (see [`update`] for the
    /// arithmetic): each flat group at once, every other parameter on its own.
    pub fn step(&mut self) {
        self.flatten();
        self.assert_bound();
        let hyper = self.hyper;
        tch::no_grad(|| {
            for f in self.flats.iter_mut().flatten() {
                let t = self.params[f.members[0]].steps + 1;
                for &i in &f.members {
                    self.params[i].steps = t;
                }
                let lr = self.lrs[f.group];
                update(&mut f.tensor, &f.grad, &mut f.exp_avg, &mut f.exp_avg_sq, lr, t, &hyper, &self.scratch);
            }
            for p in self.params.iter_mut().filter(|p| !p.in_flat) {
                let g = p.tensor.grad();
                if !g.defined() {
                    continue;
                }
                p.steps += 1;
                let lr = self.lrs[p.group];
                update(&mut p.tensor, &g, &mut p.exp_avg, &mut p.exp_avg_sq, lr, p.steps, &hyper, &self.scratch);
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
        let Hyper { beta1: b1, beta2: b2, eps, weight_decay: wd } = reference.hyper;
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

    /// [`sized_problem`] with two more variables in group 0 that never get a gradient: `c`,
    /// outside the loss, and `e`, of length 0 (as the subspace's unused prefix).
    fn problem_with_idle_variables() -> (VarStore, Tensor, Tensor) {
        let (vs, ta, tb) = sized_problem(33, 47);
        let _c = vs.root().var_copy("c", &Tensor::ones([3], (Kind::Float, Device::Cpu)));
        let _e = vs.root().zeros("e", &[0, 4]);
        (vs, ta, tb)
    }

    /// `steps` updates with clipping at `clip`, the learning rates changing every step.
    fn train(opt: &mut AdamW, vs: &VarStore, ta: &Tensor, tb: &Tensor, steps: i32, clip: f64) {
        for step in 1..=steps {
            opt.set_lr_group(0, 0.1 / step as f64);
            opt.set_lr_group(1, 0.3 / step as f64);
            opt.zero_grad();
            loss(vs, ta, tb).backward();
            opt.clip_grad_norm(clip);
            opt.step();
        }
    }

    fn assert_same_state(a: &AdamW, b: &AdamW, what: &str) {
        let ((ta, sa), (tb, sb)) = (a.state(), b.state());
        assert_eq!(sa, sb, "{what}: step counts");
        for ((k, t1), (_, t2)) in ta.iter().zip(&tb) {
            assert!(t1.equal(t2), "{what}: {k}");
        }
    }

    #[test]
    fn multi_tensor_layout_gives_the_same_bits() {
        let (vs1, ta, tb) = problem_with_idle_variables();
        let (vs2, _, _) = problem_with_idle_variables();
        let mut multi = AdamW::new(&vs1, 0.1, 0.01).multi_tensor(true);
        let mut single = AdamW::new(&vs2, 0.1, 0.01).multi_tensor(false);
        // Clipping that never scales: the update's elementwise arithmetic alone.
        train(&mut multi, &vs1, &ta, &tb, 20, 1e9);
        train(&mut single, &vs2, &ta, &tb, 20, 1e9);
        // The layout was made, with `a` and `b` in it, and backward kept accumulating into it.
        let flats = multi.flats.as_ref().expect("flattened");
        let names: Vec<Vec<&str>> =
            flats.iter().map(|f| f.members.iter().map(|&i| multi.params[i].name.as_str()).collect()).collect();
        assert_eq!(names, vec![vec!["a"], vec!["b"]]);
        assert_eq!(multi.flat_groups(), 2);
        assert!(single.flats.is_none());
        let (v1, v2) = (vs1.variables(), vs2.variables());
        for k in ["a", "b", "c", "e"] {
            assert!(v1[k].equal(&v2[k]), "{k}: the multi-tensor update differs from the per-parameter one");
        }
        assert!(v1["c"].equal(&Tensor::ones([3], (Kind::Float, Device::Cpu))), "c has no gradient");
        assert_same_state(&multi, &single, "after 20 steps");
        assert_eq!(multi.state().1["c"], 0);

        // A state saved by one layout continues in the other with the same bits (resume).
        let map: BTreeMap<String, Tensor> = multi.state().0.into_iter().collect();
        let steps = multi.state().1;
        let (vs3, _, _) = problem_with_idle_variables();
        tch::no_grad(|| {
            for (k, mut t) in vs3.variables() {
                t.copy_(&v1[&k]);
            }
        });
        let mut resumed = AdamW::new(&vs3, 0.1, 0.01).multi_tensor(true);
        resumed.load_state(&map, &steps, "test").unwrap();
        train(&mut resumed, &vs3, &ta, &tb, 5, 1e9);
        train(&mut single, &vs2, &ta, &tb, 5, 1e9);
        let v3 = vs3.variables();
        for k in ["a", "b"] {
            assert!(v3[k].equal(&v2[k]), "{k}: resumed in the multi-tensor layout");
        }
        assert_same_state(&resumed, &single, "resumed");
    }

    #[test]
    fn multi_tensor_clipping_agrees_to_rounding() {
        let (vs1, ta, tb) = problem_with_idle_variables();
        let (vs2, _, _) = problem_with_idle_variables();
        let mut multi = AdamW::new(&vs1, 0.1, 0.01).multi_tensor(true);
        let mut single = AdamW::new(&vs2, 0.1, 0.01);
        for opt in [&mut multi, &mut single] {
            opt.zero_grad();
        }
        loss(&vs1, &ta, &tb).backward();
        loss(&vs2, &ta, &tb).backward();
        let (n1, n2) = (multi.clip_grad_norm(1.0), single.clip_grad_norm(1.0));
        assert!(n2 > 10.0 && ((n1 - n2) / n2).abs() < 1e-6, "norms {n1} and {n2}");
        train(&mut multi, &vs1, &ta, &tb, 20, 1.0);
        train(&mut single, &vs2, &ta, &tb, 20, 1.0);
        let (v1, v2) = (vs1.variables(), vs2.variables());
        for k in ["a", "b"] {
            let d = (&v1[k] - &v2[k]).abs().max().double_value(&[]);
            assert!(d < 1e-5, "{k}: the layouts differ by {d} with clipping");
            assert!((&v1[k] - &sized_problem(33, 47).0.variables()[k]).abs().max().double_value(&[]) > 0.1);
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
