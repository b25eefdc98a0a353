//! Packing: the real-token rows of a padded batch, on which the token-wise work runs.

use tch::{Device, Kind, Tensor};

/// The real-token rows of a padded `(B, T)` batch. With it, every part of a layer that works
/// token by token (the linear maps, dropout, activations, normalisation, rotary positions, the
/// residuals) runs on the `N` real tokens only, `(N, H)`, and only attention sees the padded
/// `(B, T, H)` layout: the padding's rows are never computed (on short, unevenly long
/// few-shot batches they are half of the work). Used by the encoder and the decoder. Attention gets zero keys and values at padded positions, which its
/// mask gives a probability of exactly 0, as it does to the keys of padding tokens without
/// packing; the final hidden states have zeros in padded rows.
#[derive(Debug)]
pub struct Packing {
    /// `(N,)` int64: the flat indices `b · T + t` of the real tokens.
    rows: Tensor,
    /// The same indices in host memory (for drawing dropout masks of these rows only).
    pub(super) host_rows: Vec<i64>,
    /// Batch size B.
    pub(super) b: i64,
    /// Padded length T.
    pub(super) t: i64,
}

impl Packing {
    /// From a `(B, T)` 0/1 attention mask; `None` when nothing is padding (packing would only
    /// copy).
    pub fn new(attention_mask: &Tensor) -> Option<Self> {
        let (b, t) = attention_mask.size2().expect("attention mask is (B, T)");
        let mask = Vec::<i64>::try_from(attention_mask.reshape([-1]).to_kind(Kind::Int64).to_device(Device::Cpu))
            .expect("an attention mask converts to integers");
        let host_rows: Vec<i64> = (0..b * t).filter(|&i| mask[i as usize] != 0).collect();
        let rows = Tensor::from_slice(&host_rows).to_device(attention_mask.device());
        (host_rows.len() < mask.len()).then_some(Self { rows, host_rows, b, t })
    }

    /// `(N,)` int64: the position `t` in its row of every real token.
    pub fn columns(&self) -> Tensor {
        self.rows.remainder(self.t)
    }

    /// `(B, T, H)` → `(N, H)`: the real tokens' rows.
    pub fn pack(&self, x: &Tensor) -> Tensor {
        let h = *x.size().last().expect("hidden states have a last dimension");
        x.reshape([self.b * self.t, h]).index_select(0, &self.rows)
    }

    /// `(N, H)` → `(B, T, H)`, zeros in padded rows.
    pub fn unpack(&self, x: &Tensor) -> Tensor {
        let h = x.size()[1];
        Tensor::zeros([self.b * self.t, h], (x.kind(), x.device()))
            .index_copy(0, &self.rows, x)
            .view([self.b, self.t, h])
    }
}
