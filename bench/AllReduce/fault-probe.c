/* Open MPI's all-reduce outside .NET: median time and rank 0's minor page faults per call of an in-place float sum
 * of 16, 32 and 64 MB, sent whole (MPI_Iallreduce polled by MPI_Test, as MpiCollectives did; blocking MPI_Allreduce)
 * or in 4 MB pieces. The three variants are interleaved so that a loaded machine slows them alike; the fault counts
 * do not depend on the load. bench/RESULTS.md ("The large all-reduce drop") gives the command and the figures. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

enum { Variants = 3, Repeats = 3 };
static const char *names[Variants] = {"Iallreduce whole", "Allreduce whole", "Iallreduce 4 MB pieces"};

static long minor_faults(void) { struct rusage u; getrusage(RUSAGE_SELF, &u); return u.ru_minflt; }

static void iallreduce(float *data, long count) {
    MPI_Request request;
    int done = 0;
    MPI_Iallreduce(MPI_IN_PLACE, data, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &request);
    while (!done) MPI_Test(&request, &done, MPI_STATUS_IGNORE);
}

static void run(int variant, float *data, long count) {
    const long piece = (4 << 20) / sizeof(float);
    if (variant == 0) iallreduce(data, count);
    else if (variant == 1) MPI_Allreduce(MPI_IN_PLACE, data, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    else for (long at = 0; at < count; at += piece) iallreduce(data + at, count - at < piece ? count - at : piece);
}

static int ascending(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    int provided, rank;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    const int megabytes[] = {16, 32, 64};
    for (int s = 0; s < 3; s++) {
        long count = (long)megabytes[s] << 18;
        float *data = malloc(count * sizeof(float));
        for (long i = 0; i < count; i++) data[i] = 1;
        double seconds[Variants][Repeats];
        long faults[Variants] = {0};
        for (int repeat = 0; repeat <= Repeats; repeat++)   /* repeat 0 warms up */
            for (int v = 0; v < Variants; v++) {
                MPI_Barrier(MPI_COMM_WORLD);
                long before = minor_faults();
                double start = MPI_Wtime();
                run(v, data, count);
                if (repeat > 0) { seconds[v][repeat - 1] = MPI_Wtime() - start; faults[v] += minor_faults() - before; }
            }
        for (int v = 0; v < Variants; v++) {
            qsort(seconds[v], Repeats, sizeof(double), ascending);
            if (rank == 0)
                printf("%3d MB  %-24s median %8.1f ms  %6.0f MB/s  minor faults per call %ld\n", megabytes[s], names[v],
                       seconds[v][Repeats / 2] * 1e3, megabytes[s] / seconds[v][Repeats / 2], faults[v] / Repeats);
        }
        free(data);
    }
    MPI_Finalize();
    return 0;
}
