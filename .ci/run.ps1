# CI entry point on Windows: the same steps as .ci/run (static checks, then the test suite) and the same
# closing line "N passed, N failed". Installs nothing: it needs Node.js (npx) on PATH; the guest build
# needs gcc (MSYS2/mingw-w64) and WHP enabled (Enable-WindowsOptionalFeature -Online -FeatureName
# HypervisorPlatform); tests that need what is missing skip loudly outside CI.
$ErrorActionPreference = "Continue"
Set-Location (Join-Path $PSScriptRoot "..")

if (-not (Get-Command npx -ErrorAction SilentlyContinue)) {
  Write-Output "ci: npx not found (install Node.js); cannot run deno"
  Write-Output "0 passed, 1 failed"
  exit 1
}
if (-not (Get-Command gcc -ErrorAction SilentlyContinue)) {
  Write-Output "ci: gcc not found; guest builds will fail or skip (install MSYS2 mingw-w64 gcc)"
}

function Deno { & npx -y deno@2.9.6 @args }
$script:passed = 0
$script:failed = 0
function Step([string]$name, [scriptblock]$block) {
  & $block
  if ($LASTEXITCODE -eq 0) {
    Write-Output "ci: $name ok"
    $script:passed++
  } else {
    Write-Output "ci: $name FAILED"
    $script:failed++
  }
}

Step "deno fmt --check" { Deno fmt --check }
Step "deno lint" { Deno lint }
Step "deno check" { Deno check mod.ts build.ts bench/ tests/ vm/whp/ ffi/windows/ vm/memory/windows/ }
Step "deno doc --lint" { Deno doc --lint mod.ts }
Step "deno publish --dry-run" { Deno publish --dry-run --allow-dirty }

$log = New-TemporaryFile
Deno task test 2>&1 | Tee-Object -FilePath $log.FullName
$status = $LASTEXITCODE
$summary = Get-Content $log.FullName |
  ForEach-Object { $_ -replace "`e\[[0-9;]*m", "" } |
  Where-Object { $_ -match '^(ok|FAILED) \| [0-9]+ passed' } |
  Select-Object -Last 1
Remove-Item $log.FullName
if (-not $summary) {
  Write-Output "ci: no test summary found"
  $tp = 0
  $tf = 1
} else {
  $tp = [int]([regex]::Match($summary, '\| ([0-9]+) passed').Groups[1].Value)
  $tf = [int]([regex]::Match($summary, '\| ([0-9]+) failed').Groups[1].Value)
  if ($status -ne 0 -and $tf -eq 0) { $tf = 1 }
}
$script:passed += $tp
$script:failed += $tf
Write-Output "$($script:passed) passed, $($script:failed) failed"
if ($script:failed -eq 0) { exit 0 } else { exit 1 }
