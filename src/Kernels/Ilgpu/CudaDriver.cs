using System.Runtime.InteropServices;

namespace MaskBit.Kernels.Ilgpu;

/// <summary>A device as the CUDA driver describes it: ordinal, name, compute capability (sm_90 = 9.0) and memory.</summary>
public sealed record CudaDriverDevice(int Ordinal, string Name, int Major, int Minor, long MemoryBytes)
{
    public string Sm => $"sm_{Major}{Minor}";
}

/// <summary>What the NVIDIA driver library says before ILGPU touches it: which library was loaded, its CUDA
/// version and its devices, or why it cannot be used (<see cref="Problem"/>, one line with what to try).</summary>
public sealed record CudaDriverStatus(string? Library, int? Version, IReadOnlyList<CudaDriverDevice> Devices, string? Problem)
{
    /// <summary>The driver's CUDA version as "12.4" (cuDriverGetVersion's 12040), or "unknown".</summary>
    public string VersionText => FormatVersion(Version);

    public static string FormatVersion(int? version) => version is int v ? $"{v / 1000}.{v % 1000 / 10}" : "unknown";
}

/// <summary>
/// Finds and probes the CUDA driver library for ILGPU. ILGPU 1.5.3 imports it as <c>cuda</c>, which .NET resolves
/// to <c>libcuda.so</c> only: driver-only installs and containers often have just the soname <c>libcuda.so.1</c>
/// (the unversioned link ships with the CUDA toolkit), and ILGPU swallows the load failure as "no device". The
/// resolver installed here loads the soname first. Failures of the driver itself (cuInit) are reported with the
/// driver's error name, since ILGPU hides them too.
/// </summary>
public static unsafe class CudaDriver
{
    /// <summary>The library name ILGPU's P/Invokes use on Linux (its CudaAPI.xml).</summary>
    internal const string ImportName = "cuda";

    /// <summary>What the resolver loads for <see cref="ImportName"/>, in order: the soname every driver install has,
    /// then the unversioned development link. (Windows: nvcuda.dll, which .NET finds unaided.)</summary>
    internal static readonly string[] LinuxLibraryNames = ["libcuda.so.1", "libcuda.so"];

    private static readonly Lock InstallLock = new();
    private static bool _installed;

    /// <summary>Makes ILGPU's <c>cuda</c> import find <c>libcuda.so.1</c> (idempotent; call before creating a
    /// CUDA context). .NET allows one resolver per assembly: on WSL ILGPU installs its own (for /usr/lib/wsl/lib)
    /// and this one stays out of its way.</summary>
    public static void InstallResolver()
    {
        lock (InstallLock)
        {
            if (_installed || !OperatingSystem.IsLinux() || RunningOnWsl()) { _installed = true; return; }
            NativeLibrary.SetDllImportResolver(typeof(ILGPU.Context).Assembly, (name, _, _) => Resolve(name, TryLoadByName));
            _installed = true;
        }
    }

    /// <summary>The handle for ILGPU's import <paramref name="libraryName"/>: the first of
    /// <see cref="LinuxLibraryNames"/> that <paramref name="tryLoad"/> loads, or 0 to let .NET probe as usual
    /// (another library, or no driver).</summary>
    internal static nint Resolve(string libraryName, Func<string, nint> tryLoad)
    {
        if (libraryName != ImportName) return 0;
        foreach (var name in LinuxLibraryNames)
        {
            nint handle = tryLoad(name);
            if (handle != 0) return handle;
        }
        return 0;
    }

    private static nint TryLoadByName(string name) => NativeLibrary.TryLoad(name, out var handle) ? handle : 0;

    private static bool RunningOnWsl()
    {
        try { return File.ReadAllText("/proc/version").Contains("microsoft", StringComparison.OrdinalIgnoreCase) && Directory.Exists("/usr/lib/wsl/lib"); }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }

    /// <summary>Loads the driver library the way the resolver does and asks it for its version and device count.
    /// Never throws: a missing library or a failing cuInit comes back as <see cref="CudaDriverStatus.Problem"/>.</summary>
    public static CudaDriverStatus Probe() => Probe(OperatingSystem.IsWindows() ? ["nvcuda.dll"] : LinuxLibraryNames, TryLoadByName);

    internal static CudaDriverStatus Probe(IReadOnlyList<string> names, Func<string, nint> tryLoad)
    {
        string? loaded = null;
        nint library = 0;
        foreach (var candidate in names)
            if ((library = tryLoad(candidate)) != 0) { loaded = candidate; break; }
        if (library == 0)
            return new(null, null, [], $"the NVIDIA driver library ({string.Join(" or ", names)}) is not installed or not on the loader's path; " +
                                       "install the NVIDIA driver, or add the folder holding libcuda.so.1 to LD_LIBRARY_PATH");
        nint Export(string symbol) => NativeLibrary.TryGetExport(library, symbol, out var address) ? address : 0;
        var init = (delegate* unmanaged<int, int>)Export("cuInit");
        var driverGetVersion = (delegate* unmanaged<int*, int>)Export("cuDriverGetVersion");
        var deviceGetCount = (delegate* unmanaged<int*, int>)Export("cuDeviceGetCount");
        var deviceGet = (delegate* unmanaged<int*, int, int>)Export("cuDeviceGet");
        var deviceGetName = (delegate* unmanaged<byte*, int, int, int>)Export("cuDeviceGetName");
        var deviceTotalMem = (delegate* unmanaged<nuint*, int, int>)Export("cuDeviceTotalMem_v2");
        var deviceGetAttribute = (delegate* unmanaged<int*, int, int, int>)Export("cuDeviceGetAttribute");
        var errorName = (delegate* unmanaged<int, byte**, int>)Export("cuGetErrorName");
        if (init == null || driverGetVersion == null || deviceGetCount == null || deviceGet == null || deviceGetName == null
            || deviceTotalMem == null || deviceGetAttribute == null)
            return new(loaded, null, [], $"{loaded} lacks the CUDA driver API (cuInit, cuDeviceGet...); is it the NVIDIA driver's libcuda?");

        int version = 0, count = 0;
        int? knownVersion = driverGetVersion(&version) == 0 ? version : null;
        string Failure(string what, int code)
        {
            string error = ErrorName(code, errorName);
            return $"the CUDA driver ({loaded}, CUDA {CudaDriverStatus.FormatVersion(knownVersion)}) {what}: {error}; {Hint(error)}";
        }
        int result = init(0);
        if (result != 0) return new(loaded, knownVersion, [], Failure("failed to start", result));
        if ((result = deviceGetCount(&count)) != 0) return new(loaded, knownVersion, [], Failure("cannot count devices", result));
        if (count == 0) return new(loaded, knownVersion, [], Failure("sees no device", NoDevice));

        var devices = new List<CudaDriverDevice>();
        const int ComputeCapabilityMajor = 75, ComputeCapabilityMinor = 76;   // CUdevice_attribute
        byte* name = stackalloc byte[256];
        for (int ordinal = 0; ordinal < count; ordinal++)
        {
            int device = 0, major = 0, minor = 0;
            nuint memory = 0;
            if ((result = deviceGet(&device, ordinal)) != 0 || (result = deviceGetName(name, 256, device)) != 0
                || (result = deviceGetAttribute(&major, ComputeCapabilityMajor, device)) != 0
                || (result = deviceGetAttribute(&minor, ComputeCapabilityMinor, device)) != 0
                || (result = deviceTotalMem(&memory, device)) != 0)
                return new(loaded, knownVersion, devices, Failure($"cannot describe device {ordinal}", result));
            devices.Add(new(ordinal, Marshal.PtrToStringUTF8((nint)name) ?? "?", major, minor, (long)memory));
        }
        return new(loaded, knownVersion, devices, null);
    }

    private const int NoDevice = 100;   // CUDA_ERROR_NO_DEVICE

    private static string ErrorName(int code, delegate* unmanaged<int, byte**, int> errorName)
    {
        byte* name = null;
        if (errorName != null && errorName(code, &name) == 0 && name != null) return Marshal.PtrToStringUTF8((nint)name) ?? $"CUDA error {code}";
        return code == NoDevice ? "CUDA_ERROR_NO_DEVICE" : $"CUDA error {code}";
    }

    /// <summary>What to try for a CUDA driver error (its name, as cuGetErrorName or ILGPU's CudaException.Error
    /// give it).</summary>
    public static string Hint(string error) => error switch
    {
        "CUDA_ERROR_NO_DEVICE" => "check nvidia-smi, CUDA_VISIBLE_DEVICES and that the container was started with the GPU (--gpus)",
        "CUDA_ERROR_INVALID_DEVICE" => "the device index is beyond CUDA_VISIBLE_DEVICES; check nvidia-smi -L",
        "CUDA_ERROR_STUB_LIBRARY" => "the CUDA toolkit's stub libcuda (lib64/stubs) was loaded: remove that folder from LD_LIBRARY_PATH so the driver's libcuda.so.1 is found",
        "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH" or "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE" =>
            "the user-space driver (libcuda) and the kernel module differ in version: reboot after a driver update, or use the libcuda that matches nvidia-smi's driver",
        "CUDA_ERROR_DEVICE_UNAVAILABLE" or "CUDA_ERROR_DEVICES_UNAVAILABLE" or "CUDA_ERROR_CONTEXT_ALREADY_IN_USE" =>
            "the GPU is busy or in exclusive compute mode: nvidia-smi shows the compute mode and the processes holding it; pick another GPU with CUDA_VISIBLE_DEVICES",
        "CUDA_ERROR_OUT_OF_MEMORY" => "the GPU's memory is taken by other processes (nvidia-smi lists them)",
        "CUDA_ERROR_NOT_INITIALIZED" or "CUDA_ERROR_OPERATING_SYSTEM" or "CUDA_ERROR_UNKNOWN" =>
            "the driver did not start: check nvidia-smi and dmesg for NVRM errors, or reload the nvidia kernel module",
        _ => "check nvidia-smi, or run with --device cpu",
    };
}
