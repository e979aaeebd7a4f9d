namespace MaskBit.Models.Interop;

/// <summary>A tensor of a weights file as <c>maskbit inspect</c> lists it: name, on-disk dtype and shape.</summary>
public sealed record TensorListing(string Name, TensorDType DType, int[] Shape)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteCount => Count * DType.Size();
}

/// <summary>What a weights file holds, read without its tensors' values (<see cref="CheckpointFile.List"/>): listing
/// a file takes memory for its headers and pickle, not for its tensors.</summary>
public sealed record CheckpointListing(string Source, string Format, IReadOnlyList<TensorListing> Tensors, IReadOnlyList<KeyValuePair<string, object?>> Metadata)
{
    public long ParameterCount => Tensors.Sum(t => t.Count);
    public long ByteCount => Tensors.Sum(t => t.ByteCount);

    public static CheckpointListing Of(StateDict stateDict) =>
        new(stateDict.Source, stateDict.Format, stateDict.Select(t => new TensorListing(t.Name, t.DType, t.Shape)).ToList(), stateDict.Metadata);
}
