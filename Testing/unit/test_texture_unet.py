"""The texture generator's conditioning knows which value belongs to which feature (the reference code's does not)."""

import torch

from radsynth.nets.texture_unet import DEFAULT_UNET, FeatureTokens, TextureUNet

torch.set_num_threads(1)
F = 12


def _swap(features: torch.Tensor, i: int, j: int) -> torch.Tensor:
    out = features.clone()
    out[:, [i, j]] = out[:, [j, i]]
    return out


def _cross_attention(tokens: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    attn = torch.nn.MultiheadAttention(embed_dim=tokens.shape[-1], num_heads=2, batch_first=True)
    torch.manual_seed(0)
    for p in attn.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return attn(queries, tokens, tokens)[0]


def test_reference_width1_tokens_are_permutation_invariant_ours_are_not():
    torch.manual_seed(1)
    r = torch.randn(1, F)
    queries = torch.randn(1, 5, 8)
    nameless = torch.nn.Linear(1, 8, bias=False)  # the released code: token_i = w · r_i, no identity
    with torch.no_grad():
        ref_a = _cross_attention(nameless(r.unsqueeze(-1)), queries)
        ref_b = _cross_attention(nameless(_swap(r, 0, 5).unsqueeze(-1)), queries)
        ours = FeatureTokens(F, 8)
        for p in ours.parameters():  # as after training: identities well separated
            torch.nn.init.normal_(p, std=1.0)
        ours_a = _cross_attention(ours(r, torch.tensor([False])), queries)
        ours_b = _cross_attention(ours(_swap(r, 0, 5), torch.tensor([False])), queries)
    assert torch.allclose(ref_a, ref_b, atol=1e-6), "reference scheme should not see which feature is which"
    assert (ours_a - ours_b).abs().max() > 1e-3, "our tokens must depend on feature identity"


def test_null_context_ignores_features_and_differs_from_conditioned():
    tokens = FeatureTokens(F, 8)
    a, b = torch.randn(2, F), torch.randn(2, F)
    null = torch.tensor([True, False])
    ca, cb = tokens(a, null), tokens(b, null)
    assert torch.equal(ca[0], cb[0])                       # null row: features are ignored
    assert not torch.allclose(ca[1], cb[1])                 # conditioned row: they matter
    assert ca.shape == (2, F, 8)


def test_unet_output_shape_and_feature_sensitivity():
    torch.manual_seed(0)
    arch = dict(DEFAULT_UNET, channels=[8, 16, 16], num_head_channels=8, context_dim=8)
    model = TextureUNet(latent_channels=2, num_features=F, arch=arch).eval()
    for p in model.parameters():  # MONAI zero-initialises output convs; perturb so outputs depend on inputs
        torch.nn.init.normal_(p, std=0.05)
    for name, p in model.named_parameters():  # make cross-attention (attn2) and the tokens strong, as if trained
        if name.startswith("tokens") or "attn2" in name:
            torch.nn.init.normal_(p, std=1.0)
    x, y, m = torch.randn(1, 2, 8, 8, 8), torch.randn(1, 2, 8, 8, 8), torch.rand(1, 1, 8, 8, 8)
    t = torch.tensor([500])
    r = torch.randn(1, F)
    with torch.no_grad():
        out = model(x, y, m, t, r, torch.tensor([False]))
        swapped = model(x, y, m, t, _swap(r, 2, 7), torch.tensor([False]))
    assert out.shape == (1, 2, 8, 8, 8)
    assert (out - swapped).abs().max() > 1e-3 * out.abs().max(), (out.abs().max(), (out - swapped).abs().max())
