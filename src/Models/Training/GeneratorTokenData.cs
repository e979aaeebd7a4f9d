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

/// <summary>Where a token stream starts: epoch and batch within it.</summary>
public readonly record struct DataPosition(int Epoch, int Batch);

/// <summary>Token batches in a deterministic order that can be resumed at any batch.</summary>
public interface ITokenBatches
{
    IEnumerable<TokenBatch> From(DataPosition position);
}

/// <summary>
/// Tokens computed once for the whole dataset (deterministic transform, no augmentation) and kept in memory and
/// on disk: <c>tokens.npz</c> holds <c>tokens</c> (N, seq_len) int64, <c>labels</c> (N) int64 and <c>source</c>
/// (UTF-8 bytes naming the tokenizer file with its size and modification time, the dataset and the count). A
/// cache whose source differs is rebuilt. Epochs visit full batches in an order shuffled from (seed, epoch).
/// </summary>
public sealed class CachedTokenBatches : ITokenBatches
{
    public const string FileName = "tokens.npz";

    private readonly int[] _tokens;
    private readonly int[] _labels;
    private readonly int _seqLen, _batchSize, _seed;

    public int Count => _labels.Length;
    public bool LoadedFromDisk { get; }

    private CachedTokenBatches(int[] tokens, int[] labels, int seqLen, int batchSize, int seed, bool loaded)
    {
        if (labels.Length < batchSize) throw new InvalidDataException($"{labels.Length} samples make no full batch of {batchSize}");
        _tokens = tokens; _labels = labels; _seqLen = seqLen; _batchSize = batchSize; _seed = seed; LoadedFromDisk = loaded;
    }

    /// <summary>Loads <paramref name="cachePath"/> when it matches the source, else encodes the dataset and writes it.</summary>
    public static CachedTokenBatches LoadOrBuild(string cachePath, string tokenizerPath, ConvVQModel tokenizer, IImageDataset dataset,
        string datasetKey, Func<HostImage, Random, HostImage>? transform, int seqLen, int batchSize, int seed, Action<string>? log)
    {
        var tokenizerFile = new FileInfo(tokenizerPath);
        string source = $"tokenizer={tokenizerFile.FullName};size={tokenizerFile.Length};mtime={tokenizerFile.LastWriteTimeUtc.Ticks};" +
                        $"dataset={datasetKey};count={dataset.Count};seq_len={seqLen}";
        if (File.Exists(cachePath))
        {
            var arrays = Npy.ReadNpz(cachePath);
            if (arrays.TryGetValue("source", out var stored) && Encoding.UTF8.GetString(stored.Data) == source
                && arrays.TryGetValue("tokens", out var t) && arrays.TryGetValue("labels", out var l))
            {
                log?.Invoke($"token cache: reusing {cachePath} ({l.Count} samples)");
                return new CachedTokenBatches(t.ToInt32(), l.ToInt32(), seqLen, batchSize, seed, loaded: true);
            }
            log?.Invoke($"token cache: {cachePath} was made from other data or another tokenizer; rebuilding");
        }

        var loader = new DataLoader(dataset, new DataLoaderOptions { BatchSize = 64, Shuffle = false, Transform = transform, Workers = 1 });
        var tokens = new List<int>(dataset.Count * seqLen);
        var labels = new List<int>(dataset.Count);
        foreach (var batch in loader.Epoch(0))
        {
            var encoded = GeneratorSetup.Encode(tokenizer, batch.Images);
            if (encoded.Length != batch.Count * seqLen)
                throw new InvalidDataException($"the tokenizer gives {encoded.Length / batch.Count} tokens per image, the generator expects {seqLen}");
            tokens.AddRange(encoded);
            labels.AddRange(batch.Labels.ToIntArray());
            if (labels.Count % 4096 < batch.Count) log?.Invoke($"token cache: encoded {labels.Count}/{dataset.Count}");
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(cachePath))!);
        string temporary = cachePath + ".tmp";
        Npy.WriteNpz(temporary, new Dictionary<string, NpyArray>
        {
            ["tokens"] = NpyArray.FromInt64(tokens.Select(v => (long)v).ToArray(), labels.Count, seqLen),
            ["labels"] = NpyArray.FromInt64(labels.Select(v => (long)v).ToArray(), labels.Count),
            ["source"] = new NpyArray(NpyType.UInt8, new[] { Encoding.UTF8.GetByteCount(source) }, Encoding.UTF8.GetBytes(source)),
        });
        File.Move(temporary, cachePath, overwrite: true);
        log?.Invoke($"token cache: wrote {cachePath} ({labels.Count} samples)");
        return new CachedTokenBatches(tokens.ToArray(), labels.ToArray(), seqLen, batchSize, seed, loaded: false);
    }

    public int BatchesPerEpoch => Count / _batchSize;

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
                var tokens = new int[_batchSize * _seqLen];
                var labels = new int[_batchSize];
                for (int k = 0; k < _batchSize; k++)
                {
                    int sample = order[b * _batchSize + k];
                    Array.Copy(_tokens, sample * _seqLen, tokens, k * _seqLen, _seqLen);
                    labels[k] = _labels[sample];
                }
                yield return new TokenBatch(tokens, labels, epoch, b);
            }
        }
    }
}

/// <summary>Tokens computed on the fly from augmented images (the reference's way): a shuffled, resumable
/// <see cref="DataLoader"/> with full batches, each batch encoded by the frozen tokenizer.</summary>
public sealed class EncodedTokenBatches(DataLoader loader, ConvVQModel tokenizer, int seqLen) : ITokenBatches
{
    public IEnumerable<TokenBatch> From(DataPosition position)
    {
        foreach (var batch in loader.Batches(position.Epoch, position.Batch))
        {
            var tokens = GeneratorSetup.Encode(tokenizer, batch.Images);
            if (tokens.Length != batch.Count * seqLen)
                throw new InvalidDataException($"the tokenizer gives {tokens.Length / batch.Count} tokens per image, the generator expects {seqLen}");
            yield return new TokenBatch(tokens, batch.Labels.ToIntArray(), batch.Epoch, batch.Index);
        }
    }
}
