//! The simplex mechanics on a tiny random encoder: Dirichlet draws, mixing, head mixing,
//! the regulariser, and one vertex being plain prefix tuning.

mod common;

use prefix_subspace::config::{Granularity, Init, RunConfig};
use prefix_subspace::method::subspace::{cos_squared, At, Subspace};
use prefix_subspace::model::Pooling;
use rand::SeedableRng;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn subspace(n: usize, granularity: Granularity) -> (nn::VarStore, Subspace, prefix_subspace::model::Encoder) {
    let enc = common::tiny_bert(0);
    let cfg =
        RunConfig { vertices: n, prefix_len: 3, granularity, init: Init::Normal, init_std: 0.5, ..Default::default() };
    let vs = nn::VarStore::new(Device::Cpu);
    let s = Subspace::new(&vs.root(), &cfg, &enc, 4, Pooling::Mean, None, None);
    (vs, s, enc)
}

#[test]
fn dirichlet_draws_lie_on_the_simplex_with_mean_one_over_n() {
    let _rng = common::torch_rng_lock();
    for n in [2usize, 3, 5] {
        let (_vs, s, _) = subspace(n, Granularity::ExampleLayer);
        tch::manual_seed(7);
        let a = s.sample_alphas(20_000, Device::Cpu);
        assert_eq!(a.layers.size(), vec![20_000, 2, n as i64]);
        assert_eq!(a.head.size(), vec![20_000, n as i64]);
        for t in [&a.layers, &a.head] {
            assert!(t.min().double_value(&[]) >= 0.0);
            let sums = t.sum_dim_intlist(-1, false, Kind::Float);
            assert!((sums - 1.0).abs().max().double_value(&[]) < 1e-5);
        }
        let mean = a.layers.mean_dim([0, 1].as_slice(), false, Kind::Float);
        let err = (mean - 1.0 / n as f64).abs().max().double_value(&[]);
        assert!(err < 0.01, "n = {n}: mean differs from 1/n by {err}");
        // Per example and layer: layers of one example differ.
        assert!((a.layers.select(1, 0) - a.layers.select(1, 1)).abs().max().double_value(&[]) > 0.1);
    }
}

#[test]
fn granularity_controls_what_shares_an_alpha() {
    let _rng = common::torch_rng_lock();
    let (_vs, s, _) = subspace(3, Granularity::Example);
    let a = s.sample_alphas(6, Device::Cpu);
    assert_eq!((a.layers.select(1, 0) - a.layers.select(1, 1)).abs().max().double_value(&[]), 0.0);
    assert_eq!((a.layers.select(1, 0) - &a.head).abs().max().double_value(&[]), 0.0);
    assert!((a.head.get(0) - a.head.get(1)).abs().max().double_value(&[]) > 0.0);
    let (_vs, s, _) = subspace(3, Granularity::Batch);
    let a = s.sample_alphas(6, Device::Cpu);
    assert_eq!(a.head.size()[0], 1, "one α for the whole batch");
}

#[test]
fn centroid_is_the_vertex_average_and_a_unit_alpha_is_the_vertex_exactly() {
    let _rng = common::torch_rng_lock();
    let (_vs, s, _) = subspace(3, Granularity::ExampleLayer);
    let v = s.vertex_prefixes();
    let c = s.mixed_prefix(&s.fixed_alphas(&At::Centroid, Device::Cpu)); // (L, 2, 1, p, H)
    let avg = v.mean_dim(0, false, Kind::Float).unsqueeze(2);
    assert!(common::max_abs_diff(&c, &avg) < 1e-6);
    for i in 0..3 {
        let p = s.mixed_prefix(&s.fixed_alphas(&At::Vertex(i), Device::Cpu));
        assert_eq!(common::max_abs_diff(&p, &v.get(i as i64).unsqueeze(2)), 0.0, "vertex {i} is not exact");
    }
}

#[test]
fn per_example_alphas_mix_each_example_separately() {
    let _rng = common::torch_rng_lock();
    let (_vs, s, _) = subspace(3, Granularity::ExampleLayer);
    let a = s.sample_alphas(4, Device::Cpu);
    let mixed = s.mixed_prefix(&a); // (L, 2, B, p, H)
    let v = s.vertex_prefixes();
    for b in 0..4 {
        for l in 0..2 {
            let w = a.layers.get(b).get(l);
            let expect = (0..3).map(|i| v.get(i).get(l) * w.get(i)).reduce(|x, y| x + y).unwrap();
            let got = mixed.get(l).select(1, b);
            assert!(common::max_abs_diff(&got, &expect) < 1e-5);
        }
    }
}

#[test]
fn the_head_mixes_vertex_logits_with_its_own_alpha() {
    let _rng = common::torch_rng_lock();
    let (_vs, s, _) = subspace(3, Granularity::ExampleLayer);
    tch::manual_seed(3);
    let pooled = Tensor::randn([5, 16], (Kind::Float, Device::Cpu));
    let per_vertex: Vec<Tensor> =
        (0..3).map(|i| s.head_logits(&pooled, &s.fixed_alphas(&At::Vertex(i), Device::Cpu).head)).collect();
    let a = s.sample_alphas(5, Device::Cpu);
    let mixed = s.head_logits(&pooled, &a.head);
    let expect = (0..3).map(|i| &per_vertex[i] * a.head.select(1, i as i64).unsqueeze(1)).reduce(|x, y| x + y).unwrap();
    assert!(common::max_abs_diff(&mixed, &expect) < 1e-5);
    assert!(common::max_abs_diff(&per_vertex[0], &per_vertex[1]) > 1e-3, "vertices have their own heads");
}

#[test]
fn the_regulariser_gradient_pushes_a_pair_of_vertices_apart() {
    let _rng = common::torch_rng_lock();
    let a = Tensor::from_slice(&[1.0f32, 0.2, 0.1]).set_requires_grad(true);
    let b = Tensor::from_slice(&[0.9f32, 0.3, -0.1]).set_requires_grad(true);
    let before = cos_squared(&a, &b).double_value(&[]);
    cos_squared(&a, &b).backward();
    let (ga, gb) = (a.grad(), b.grad());
    let (a2, b2) = tch::no_grad(|| (&a - ga * 0.1, &b - gb * 0.1));
    let after = cos_squared(&a2, &b2).double_value(&[]);
    assert!(after < before, "cos² {before} -> {after}");

    // And inside the subspace: steps on β·cos² alone lower the similarity of the vertices.
    let (vs, s, _) = subspace(2, Granularity::ExampleLayer);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut opt = nn::Sgd::default().build(&vs, 0.5).unwrap();
    let v = s.vertex_prefixes();
    let c0 = cos_squared(&v.get(0).flatten(0, -1), &v.get(1).flatten(0, -1)).double_value(&[]);
    for _ in 0..20 {
        let r = s.regulariser(&mut rng).unwrap();
        opt.backward_step(&r);
    }
    let v = s.vertex_prefixes();
    let c1 = cos_squared(&v.get(0).flatten(0, -1), &v.get(1).flatten(0, -1)).double_value(&[]);
    assert!(c1 < c0 * 0.5, "cos² {c0} -> {c1}");
}

#[test]
fn one_vertex_draws_nothing_and_has_no_regulariser() {
    let _rng = common::torch_rng_lock();
    let (_vs, s, _) = subspace(1, Granularity::ExampleLayer);
    tch::manual_seed(11);
    let a = s.sample_alphas(4, Device::Cpu);
    assert_eq!(a.layers.sum(Kind::Float).double_value(&[]), 2.0, "α = 1 for each layer");
    let next = Tensor::rand([1], (Kind::Float, Device::Cpu)).double_value(&[]);
    tch::manual_seed(11);
    let fresh = Tensor::rand([1], (Kind::Float, Device::Cpu)).double_value(&[]);
    assert_eq!(next, fresh, "sampling α with one vertex consumed random numbers");
    assert!(s.regulariser(&mut rand_chacha::ChaCha8Rng::seed_from_u64(0)).is_none());
}

#[test]
fn training_moves_the_prefix_and_heads_but_not_the_encoder() {
    let _rng = common::torch_rng_lock();
    let (vs, s, enc) = subspace(3, Granularity::ExampleLayer);
    let before: Vec<Tensor> = enc.named_tensors().iter().map(|(_, t)| t.copy()).collect();
    let p0 = s.vertex_prefixes().copy();
    let mut opt = nn::AdamW::default().build(&vs, 1e-2).unwrap();
    let batch = common::tiny_batch(4, 7);
    let y = Tensor::from_slice(&[0i64, 1, 2, 3]);
    for _ in 0..3 {
        let a = s.sample_alphas(4, Device::Cpu);
        let loss = s.forward(&enc, &batch, &a, true).cross_entropy_for_logits(&y);
        opt.backward_step(&loss);
    }
    assert!(common::max_abs_diff(&p0, &s.vertex_prefixes()) > 1e-4);
    for ((name, t), b) in enc.named_tensors().iter().zip(&before) {
        assert_eq!(common::max_abs_diff(t, b), 0.0, "{name} changed");
    }
}

#[test]
fn the_mlp_reparameterisation_produces_prefixes_of_the_right_shape_with_gradients() {
    let _rng = common::torch_rng_lock();
    let enc = common::tiny_bert(0);
    let cfg = RunConfig { vertices: 2, prefix_len: 3, reparam: 8, init: Init::Normal, ..Default::default() };
    let vs = nn::VarStore::new(Device::Cpu);
    let s = Subspace::new(&vs.root(), &cfg, &enc, 2, Pooling::Cls, None, None);
    assert_eq!(s.vertex_prefixes().size(), vec![2, 2, 2, 3, 16]);
    let a = s.sample_alphas(2, Device::Cpu);
    let loss = s.forward(&enc, &common::tiny_batch(2, 5), &a, true).sum(Kind::Float);
    loss.backward();
    assert!(vs.trainable_variables().iter().all(|v| v.grad().defined()));
}
