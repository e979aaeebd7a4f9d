using System.Text;
using MaskBit.Autograd;
using MaskBit.Models.Data;
using MaskBit.Models.Interop;
using MaskBit.Models.Tokenizer;

namespace MaskBit.Models.Training;

/// <summary>One training batch of the generator: combined tokens (Count × seq_len, row-major) and class labels,
/// with its position in the data order (resume continues after it).</summary>
public sealed record TokenBatch(int[] Tokens, int[] Labels, int Epoch, int Index)
{
    public int Count => Labels.Length;
}

/// <summary>Token batches in a deterministic order that can be resumed at any batch.</summary>
public interface ITokenBatches
{
    IEnumerable<TokenBatch> From(DataPosition position);
}

/// <summary>
/// Tokens of the whole dataset under the deterministic (non-augmenting) transform, each sample encoded once: the
/// first epoch encodes its batches as it meets them, and once every sample has tokens they are written to
/// <c>tokens.npz</c> — <c>tokens</c> (N, seq_len) int64, <c>labels</c> (N) int64 and <c>source</c> (UTF-8 bytes
/// naming the tokenizer file with its size and modification time, the dataset and the count). A later run with
/// the same source loads the file instead of encoding; a different source rebuilds it. Epochs visit full batches
/// in an order shuffled from (seed, epoch). Unlike the on-the-fly loader, an unreadable sample is an error here.
/// With several ranks (<paramref name="rank"/> of <paramref name="worldSize"/>) each rank takes its share of every
/// global batch (as <see cref="DataLoaderOptions.Rank"/>) and encodes only the samples it meets, so no rank holds every
/// sample's tokens: such runs reuse a tokens.npz a one-process run wrote, and otherwise keep the tokens in memory.
/// </summary>
public sealed class CachedTokenBatches : ITokenBatches
{
    public const string FileName = "tokens.npz";

    private readonly string _cachePath, _source;
    private readonly ImageTokenizer _tokenizer;
    private readonly IImageDataset _dataset;
    private readonly Func<HostImage, Random, HostImage>? _transform;
    private readonly Action<string>? _log;
    private readonly int[] _tokens, _labels;
    private readonly bool[] _encoded;
    private readonly int _seqLen, _batchSize, _seed, _rank, _worldSize;
    private int _encodedCount;

    public int Count => _labels.Length;
    public bool Complete => _encodedCount == Count;

    /// <summary>Opens the cache at <paramref name="cachePath"/>, loading it when it was made from the same tokenizer
    /// file and dataset.</summary>
    public CachedTokenBatches(string cachePath, string tokenizerPath, ImageTokenizer tokenizer, IImageDataset dataset, string datasetKey,
        Func<HostImage, Random, HostImage>? transform, int seqLen, int batchSize, int seed, Action<string>? log, int rank = 0, int worldSize = 1)
    {
        if (dataset.Count < batchSize * worldSize) throw new InvalidDataException($"{dataset.Count} samples make no full batch of {batchSize * worldSize}");
        var tokenizerFile = new FileInfo(tokenizerPath);
        _source = $"tokenizer={tokenizerFile.FullName};size={tokenizerFile.Length};mtime={tokenizerFile.LastWriteTimeUtc.Ticks};" +
                  $"dataset={datasetKey};count={dataset.Count};seq_len={seqLen}";
        _cachePath = cachePath; _tokenizer = tokenizer; _dataset = dataset; _transform = transform; _log = log;
        _seqLen = seqLen; _batchSize = batchSize; _seed = seed; _rank = rank; _worldSize = worldSize;
        _tokens = new int[dataset.Count * seqLen];
        _labels = new int[dataset.Count];
        _encoded = new bool[dataset.Count];
        if (!File.Exists(cachePath)) return;
        var arrays = Npy.ReadNpz(cachePath);
        if (arrays.TryGetValue("source", out var stored) && Encoding.UTF8.GetString(stored.Data) == _source
            && arrays.TryGetValue("tokens", out var t) && arrays.TryGetValue("labels", out var l))
        {
            t.ToInt32().CopyTo(_tokens, 0);
            l.ToInt32().CopyTo(_labels, 0);
            Array.Fill(_encoded, true);
            _encodedCount = Count;
            log?.Invoke($"token cache: reusing {cachePath} ({Count} samples)");
        }
        else log?.Invoke($"token cache: {cachePath} was made from other data or another tokenizer; it will be rebuilt");
    }

    public int BatchesPerEpoch => Count / (_batchSize * _worldSize);

    public IEnumerable<TokenBatch> From(DataPosition position)
    {
        for (int epoch = position.Epoch; ; epoch++)
        {
            var order = new int[Count];
            for (int i = 0; i < order.Length; i++) order[i] = i;
            var rng = new Rng((ulong)_seed * 0x9E3779B97F4A7C15UL ^ (ulong)epoch);
            for (int i = order.Length - 1; i > 0; i--)
            {
                int j = rng.NextInt(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }
            for (int b = epoch == position.Epoch ? position.Batch : 0; b < BatchesPerEpoch; b++)
            {
                var samples = order.AsSpan((b * _worldSize + _rank) * _batchSize, _batchSize).ToArray();
                EnsureEncoded(samples);
                var tokens = new int[_batchSize * _seqLen];
                var labels = new int[_batchSize];
                for (int k = 0; k < _batchSize; k++)
                {
                    Array.Copy(_tokens, samples[k] * _seqLen, tokens, k * _seqLen, _seqLen);
                    labels[k] = _labels[samples[k]];
                }
                yield return new TokenBatch(tokens, labels, epoch, b);
            }
        }
    }

    /// <summary>Encodes the samples without tokens yet (one tokenizer batch) and writes the file once all have them.</summary>
    private void EnsureEncoded(int[] samples)
    {
        var missing = samples.Where(i => !_encoded[i]).ToArray();
        if (missing.Length > 0)
        {
            var raw = missing.Select(_dataset.Load).ToArray();
            // The deterministic transform ignores its Random.
            var images = raw.Select(r => _transform?.Invoke(r.Image, new Random(0)) ?? r.Image).ToArray();
            for (int k = 1; k < images.Length; k++)
                if (images[k].Height != images[0].Height || images[k].Width != images[0].Width || images[k].Channels != images[0].Channels)
                    throw new InvalidDataException($"sample '{_dataset.KeyOf(missing[k])}' is {images[k]} but '{_dataset.KeyOf(missing[0])}' is {images[0]}");
            int size = images[0].Pixels.Length;
            var pixels = new float[images.Length * size];
            for (int k = 0; k < images.Length; k++) ImageIO.WriteChw(images[k], pixels.AsSpan(k * size, size));
            int[] encoded;
            using (TensorScope.Begin())
                encoded = ImageTokens.Encode(_tokenizer, Tensor.FromArray(pixels, new[] { images.Length, images[0].Channels, images[0].Height, images[0].Width }, _tokenizer.LastLayer.Device));
            if (encoded.Length != missing.Length * _seqLen)
                throw new InvalidDataException($"the tokenizer gives {encoded.Length / missing.Length} tokens per image, the generator expects {_seqLen}");
            for (int k = 0; k < missing.Length; k++)
            {
                Array.Copy(encoded, k * _seqLen, _tokens, missing[k] * _seqLen, _seqLen);
                _labels[missing[k]] = raw[k].Label;
                _encoded[missing[k]] = true;
            }
            _encodedCount += missing.Length;
            if (Complete) Write();
        }
    }

    private void Write()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(_cachePath))!);
        string temporary = _cachePath + ".tmp";
        Npy.WriteNpz(temporary, new Dictionary<string, NpyArray>
        {
            ["tokens"] = NpyArray.FromInt64(_tokens.Select(v => (long)v).ToArray(), Count, _seqLen),
            ["labels"] = NpyArray.FromInt64(_labels.Select(v => (long)v).ToArray(), Count),
            ["source"] = new NpyArray(NpyType.UInt8, new[] { Encoding.UTF8.GetByteCount(_source) }, Encoding.UTF8.GetBytes(_source)),
        });
        File.Move(temporary, _cachePath, overwrite: true);
        _log?.Invoke($"token cache: every sample encoded; wrote {_cachePath}");
    }
}

/// <summary>Tokens computed on the fly from augmented images (the reference's way): a shuffled, resumable
/// <see cref="DataLoader"/> with full batches, each batch encoded by the frozen tokenizer.</summary>
public sealed class EncodedTokenBatches(DataLoader loader, ImageTokenizer tokenizer, int seqLen) : ITokenBatches
{
    public IEnumerable<TokenBatch> From(DataPosition position)
    {
        foreach (var batch in loader.Batches(position.Epoch, position.Batch))
        {
            var tokens = ImageTokens.Encode(tokenizer, batch.Images);
            if (tokens.Length != batch.Count * seqLen)
                throw new InvalidDataException($"the tokenizer gives {tokens.Length / batch.Count} tokens per image, the generator expects {seqLen}");
            yield return new TokenBatch(tokens, batch.Labels.ToIntArray(), batch.Epoch, batch.Index);
        }
    }
}

public static class ImageTokens
{
    /// <summary>Tokens (B, h·w) of a batch of images (B, C, H, W) in [0, 1], as Int32 on the host.</summary>
    public static int[] Encode(ImageTokenizer tokenizer, Tensor images)
    {
        using var noGrad = Tape.NoGrad();
        using var scope = TensorScope.Begin();
        var (_, result) = tokenizer.Encode(images);
        return result.MinEncodingIndices.ToIntArray();
    }
}
