/* A stand-in for Windows 10's bcryptprimitives.dll, for the Wine runs only (never shipped):
 * Rust's standard library takes its random numbers from ProcessPrng there, and Wine 8 lacks
 * the DLL. This one draws them from RtlGenRandom (advapi32's SystemFunction036). */

#include <windows.h>
#include <ntsecapi.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
