import torch

from ninshiki.engine.batches import Normalizer, shard_order


def test_normalizer_matches_the_textbook_formula() -> None:
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    norm = Normalizer((0.2, 0.5, 0.7), (0.3, 0.25, 0.1))
    mean, std = torch.tensor(norm.mean).view(1, 3, 1, 1), torch.tensor(norm.std).view(1, 3, 1, 1)
    torch.testing.assert_close(norm(images), (images.float() / 255 - mean) / std, atol=1e-5, rtol=1e-5)
    assert norm(images, channels_last=True).is_contiguous(memory_format=torch.channels_last)


def test_shards_cover_every_sample_with_equal_counts_per_rank() -> None:
    shards = [shard_order(10, shuffle=True, generator=torch.Generator().manual_seed(1), rank=r, world_size=3,
                          pad=True) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert set(torch.cat(shards).tolist()) == set(range(10))
    unpadded = [shard_order(10, shuffle=False, generator=torch.Generator(), rank=r, world_size=3, pad=False)
                for r in range(3)]
    assert sorted(torch.cat(unpadded).tolist()) == list(range(10))
