# Megatron model flags of the tiny DeepSeek-V3-shaped model (workloads/tiny/tiny_model.py), in the shape of
# slime's scripts/models/deepseek-v3.sh. Source it, then pass "${MODEL_ARGS[@]}" to
# tools/convert_hf_to_torch_dist.py and train.py; both check these values against the checkpoint's config.
# Stand-in values for the tiny-local preset, not DeepSeek-V3's.
MOE_SHARED_EXPERTS=1
MOE_FFN_HIDDEN=96
MOE_SHARED_EXPERT_INTERMEDIATE_SIZE=$((MOE_FFN_HIDDEN * MOE_SHARED_EXPERTS))
MOE_ROUTED_EXPERTS=8
MOE_ACTIVE_ROUTED_EXPERTS=2
N_DENSE_LAYERS=1
N_MOE_LAYERS=3

MODEL_ARGS=(
   --disable-bias-linear
   --num-layers $((N_DENSE_LAYERS + N_MOE_LAYERS))
   --hidden-size 160
   --ffn-hidden-size 320
   --num-attention-heads 4
   --kv-channels 32
   --normalization RMSNorm
   --norm-epsilon 1e-6
   --position-embedding-type rope
   --rotary-base 10000
   --max-position-embeddings 64
   --swiglu
   --untie-embeddings-and-output-weights
   --no-position-embedding
   --vocab-size 49
   --make-vocab-size-divisible-by 1

   # multi-head latent attention
   --multi-latent-attention
   --q-lora-rank 96
   --kv-lora-rank 64
   --qk-head-dim 32
   --qk-pos-emb-head-dim 16
   --v-head-dim 32
   --qk-layernorm
   --rotary-scaling-factor 1
   --mscale 1.0
   --mscale-all-dim 1.0

   # mixture of experts
   --moe-layer-freq "[0]*${N_DENSE_LAYERS}+[1]*${N_MOE_LAYERS}"
   --num-experts ${MOE_ROUTED_EXPERTS}
   --moe-ffn-hidden-size ${MOE_FFN_HIDDEN}
   --moe-shared-expert-intermediate-size ${MOE_SHARED_EXPERT_INTERMEDIATE_SIZE}
   --moe-router-topk ${MOE_ACTIVE_ROUTED_EXPERTS}
   --moe-router-topk-scaling-factor 1.0
   --moe-router-score-function sigmoid
   --moe-router-enable-expert-bias
   --moe-router-bias-update-rate 0
   --moe-router-load-balancing-type seq_aux_loss
   --moe-aux-loss-coeff 0
   --moe-router-dtype fp32
   --moe-grouped-gemm
   --moe-permute-fusion
)
